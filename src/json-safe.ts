/** JSON.stringify that writes bigints (int64 columns such as LAION's `hash`) as numbers when exact, strings otherwise. */
export function toJson(value: unknown, space?: number): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v), space);
}
