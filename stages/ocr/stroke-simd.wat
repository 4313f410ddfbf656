;; Stroke morphology on 16 pixels an instruction (WebAssembly SIMD), for strokeResponsesFast in
;; stroke-morphology.ts; `strokeResponses` there, in plain TypeScript, is the reference. Built into
;; stroke-simd.wasm.ts by `npm run build:wasm` (scripts/build-wasm.mjs); test/wasm-kernels.test.ts
;; checks the built bytes are this text's.
(module
  (type $minmax5_t (func (param i32 i32 i32 i32 i32 i32 i32)))
  (type $subsat_t (func (param i32 i32 i32 i32)))
  (import "e" "m" (memory 1))

  ;; For i, i+16, … < end: mn[i..i+15] = min of a at i−2s, i−s, i, i+s, i+2s and mx[i..i+15] =
  ;; the max of b there (s = 1 along rows, s = the width down columns). Byte addresses.
  (func $minmax5 (type $minmax5_t) (param $a i32) (param $b i32) (param $mn i32) (param $mx i32) (param $i i32) (param $end i32) (param $s i32)
    (local $s2 i32)
    (local.set $s2 (i32.shl (local.get $s) (i32.const 1)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store align=1
          (i32.add (local.get $mn) (local.get $i))
          (i8x16.min_u
            (i8x16.min_u
              (i8x16.min_u
                (i8x16.min_u
                  (v128.load align=1 (i32.sub (i32.add (local.get $a) (local.get $i)) (local.get $s2)))
                  (v128.load align=1 (i32.sub (i32.add (local.get $a) (local.get $i)) (local.get $s))))
                (v128.load align=1 (i32.add (local.get $a) (local.get $i))))
              (v128.load align=1 (i32.add (i32.add (local.get $a) (local.get $i)) (local.get $s))))
            (v128.load align=1 (i32.add (i32.add (local.get $a) (local.get $i)) (local.get $s2)))))
        (v128.store align=1
          (i32.add (local.get $mx) (local.get $i))
          (i8x16.max_u
            (i8x16.max_u
              (i8x16.max_u
                (i8x16.max_u
                  (v128.load align=1 (i32.sub (i32.add (local.get $b) (local.get $i)) (local.get $s2)))
                  (v128.load align=1 (i32.sub (i32.add (local.get $b) (local.get $i)) (local.get $s))))
                (v128.load align=1 (i32.add (local.get $b) (local.get $i))))
              (v128.load align=1 (i32.add (i32.add (local.get $b) (local.get $i)) (local.get $s))))
            (v128.load align=1 (i32.add (i32.add (local.get $b) (local.get $i)) (local.get $s2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  ;; out = a − b, saturating at 0, for n bytes (rounded up to 16).
  (func $subsat (type $subsat_t) (param $a i32) (param $b i32) (param $out i32) (param $n i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (v128.store align=1
          (i32.add (local.get $out) (local.get $i))
          (i8x16.sub_sat_u
            (v128.load align=1 (i32.add (local.get $a) (local.get $i)))
            (v128.load align=1 (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next))))

  (export "minmax5" (func $minmax5))
  (export "subsat" (func $subsat)))
