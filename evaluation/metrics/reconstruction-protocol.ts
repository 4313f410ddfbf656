/** The Table 2 benchmarks `bitprep eval reconstruction` scores. */
export type ReconstructionDataset = 'imagenet' | 'coco';

/** The resolution each Table 2 benchmark evaluates at (the paper's title: "Tokenizer reconstruction at 512x512 on ImageNet and MS-COCO"). */
export const DATASET_RESOLUTION: Readonly<Record<ReconstructionDataset, number>> = { imagenet: 512, coco: 512 };
