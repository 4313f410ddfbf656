/**
 * Keys are the unit id followed by the row's offset in the unit (img2dataset's scheme): unique in
 * the dataset, stable across reruns, free of dots, and sorted in input order.
 */
export function sampleKey(unitId: string, offset: number, unitSize: number): string {
  return unitId + String(offset).padStart(String(Math.max(1, unitSize - 1)).length, '0');
}
