export declare const KERNELS: { wat: string; constant: string }[];
export declare function assemble(path: string, text: string): Promise<Uint8Array>;
export declare function generatedPath(wat: string): string;
