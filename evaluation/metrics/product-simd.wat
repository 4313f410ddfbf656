;; The f64x2 (WebAssembly SIMD) kernel of accumulateProductNT in matrix-product.ts; the plain
;; TypeScript loops there are the reference. Built into product-simd.wasm.ts by `npm run build:wasm`
;; (scripts/build-wasm.mjs); test/wasm-kernels.test.ts checks the built bytes are this text's.
(module
  (type $nt4x2_t (func (param i32 i32 i32 i32 i32 i32 i32 i32 f64)))
  (import "e" "m" (memory 1))

  ;; For p < pairs, the 4×2 block C[0..3][2p..2p+1] += sign·A[0..3][0..k)·B[2p..2p+1][0..k)ᵀ, where
  ;; row r of A starts at a + r·lda, row j of B at b + j·ldb, and C[r][j] is the f64 at c + r·ldc + 8j
  ;; (byte addresses and strides). Each dot product runs in two lanes (even and odd k) summed at the
  ;; end; an odd k's last term goes into lane 0. Only the summation order differs from the plain loops.
  (func $nt4x2 (type $nt4x2_t)
    (param $a i32) (param $lda i32) (param $b i32) (param $ldb i32) (param $c i32) (param $ldc i32) (param $pairs i32) (param $k i32) (param $sign f64)
    (local $a1 i32) (local $a2 i32) (local $a3 i32) ;; rows 1..3 of A
    (local $b1 i32) ;; the second row of B of this pair
    (local $kb i32) (local $kend i32) (local $kfull i32) ;; byte offsets along k: now, end of the pairs of terms, end
    (local $cr i32) ;; the row of C being added to
    (local $acc00 v128) (local $acc01 v128) (local $acc10 v128) (local $acc11 v128) (local $acc20 v128) (local $acc21 v128) (local $acc30 v128) (local $acc31 v128) ;; acc<r><q>: A row r · B row q, two lanes
    (local $y0 v128) (local $y1 v128) (local $x v128)
    (local.set $a1 (i32.add (local.get $a) (local.get $lda)))
    (local.set $a2 (i32.add (local.get $a1) (local.get $lda)))
    (local.set $a3 (i32.add (local.get $a2) (local.get $lda)))
    (local.set $kend (i32.shl (i32.and (local.get $k) (i32.const -2)) (i32.const 3)))
    (local.set $kfull (i32.shl (local.get $k) (i32.const 3)))
    (block $done
      (loop $pair
        (br_if $done (i32.eqz (local.get $pairs)))
        (local.set $b1 (i32.add (local.get $b) (local.get $ldb)))
        (local.set $acc00 (v128.const i64x2 0 0))
        (local.set $acc01 (v128.const i64x2 0 0))
        (local.set $acc10 (v128.const i64x2 0 0))
        (local.set $acc11 (v128.const i64x2 0 0))
        (local.set $acc20 (v128.const i64x2 0 0))
        (local.set $acc21 (v128.const i64x2 0 0))
        (local.set $acc30 (v128.const i64x2 0 0))
        (local.set $acc31 (v128.const i64x2 0 0))
        (local.set $kb (i32.const 0))
        (block $terms_done
          (loop $terms
            (br_if $terms_done (i32.ge_u (local.get $kb) (local.get $kend)))
            (local.set $y0 (v128.load (i32.add (local.get $b) (local.get $kb))))
            (local.set $y1 (v128.load (i32.add (local.get $b1) (local.get $kb))))
            (local.set $x (v128.load (i32.add (local.get $a) (local.get $kb))))
            (local.set $acc00 (f64x2.add (local.get $acc00) (f64x2.mul (local.get $x) (local.get $y0))))
            (local.set $acc01 (f64x2.add (local.get $acc01) (f64x2.mul (local.get $x) (local.get $y1))))
            (local.set $x (v128.load (i32.add (local.get $a1) (local.get $kb))))
            (local.set $acc10 (f64x2.add (local.get $acc10) (f64x2.mul (local.get $x) (local.get $y0))))
            (local.set $acc11 (f64x2.add (local.get $acc11) (f64x2.mul (local.get $x) (local.get $y1))))
            (local.set $x (v128.load (i32.add (local.get $a2) (local.get $kb))))
            (local.set $acc20 (f64x2.add (local.get $acc20) (f64x2.mul (local.get $x) (local.get $y0))))
            (local.set $acc21 (f64x2.add (local.get $acc21) (f64x2.mul (local.get $x) (local.get $y1))))
            (local.set $x (v128.load (i32.add (local.get $a3) (local.get $kb))))
            (local.set $acc30 (f64x2.add (local.get $acc30) (f64x2.mul (local.get $x) (local.get $y0))))
            (local.set $acc31 (f64x2.add (local.get $acc31) (f64x2.mul (local.get $x) (local.get $y1))))
            (local.set $kb (i32.add (local.get $kb) (i32.const 16)))
            (br $terms)))
        ;; An odd k: its last term, alone, in lane 0.
        (if (i32.lt_u (local.get $kb) (local.get $kfull))
          (then
            (local.set $y0 (v128.load64_zero (i32.add (local.get $b) (local.get $kb))))
            (local.set $y1 (v128.load64_zero (i32.add (local.get $b1) (local.get $kb))))
            (local.set $x (v128.load64_zero (i32.add (local.get $a) (local.get $kb))))
            (local.set $acc00 (f64x2.add (local.get $acc00) (f64x2.mul (local.get $x) (local.get $y0))))
            (local.set $acc01 (f64x2.add (local.get $acc01) (f64x2.mul (local.get $x) (local.get $y1))))
            (local.set $x (v128.load64_zero (i32.add (local.get $a1) (local.get $kb))))
            (local.set $acc10 (f64x2.add (local.get $acc10) (f64x2.mul (local.get $x) (local.get $y0))))
            (local.set $acc11 (f64x2.add (local.get $acc11) (f64x2.mul (local.get $x) (local.get $y1))))
            (local.set $x (v128.load64_zero (i32.add (local.get $a2) (local.get $kb))))
            (local.set $acc20 (f64x2.add (local.get $acc20) (f64x2.mul (local.get $x) (local.get $y0))))
            (local.set $acc21 (f64x2.add (local.get $acc21) (f64x2.mul (local.get $x) (local.get $y1))))
            (local.set $x (v128.load64_zero (i32.add (local.get $a3) (local.get $kb))))
            (local.set $acc30 (f64x2.add (local.get $acc30) (f64x2.mul (local.get $x) (local.get $y0))))
            (local.set $acc31 (f64x2.add (local.get $acc31) (f64x2.mul (local.get $x) (local.get $y1))))))
        ;; C[r][q] += sign·(lane 0 + lane 1)
        (local.set $cr (local.get $c))
        (f64.store (local.get $cr)
          (f64.add (f64.load (local.get $cr))
            (f64.mul (local.get $sign) (f64.add (f64x2.extract_lane 0 (local.get $acc00)) (f64x2.extract_lane 1 (local.get $acc00))))))
        (f64.store offset=8 (local.get $cr)
          (f64.add (f64.load offset=8 (local.get $cr))
            (f64.mul (local.get $sign) (f64.add (f64x2.extract_lane 0 (local.get $acc01)) (f64x2.extract_lane 1 (local.get $acc01))))))
        (local.set $cr (i32.add (local.get $cr) (local.get $ldc)))
        (f64.store (local.get $cr)
          (f64.add (f64.load (local.get $cr))
            (f64.mul (local.get $sign) (f64.add (f64x2.extract_lane 0 (local.get $acc10)) (f64x2.extract_lane 1 (local.get $acc10))))))
        (f64.store offset=8 (local.get $cr)
          (f64.add (f64.load offset=8 (local.get $cr))
            (f64.mul (local.get $sign) (f64.add (f64x2.extract_lane 0 (local.get $acc11)) (f64x2.extract_lane 1 (local.get $acc11))))))
        (local.set $cr (i32.add (local.get $cr) (local.get $ldc)))
        (f64.store (local.get $cr)
          (f64.add (f64.load (local.get $cr))
            (f64.mul (local.get $sign) (f64.add (f64x2.extract_lane 0 (local.get $acc20)) (f64x2.extract_lane 1 (local.get $acc20))))))
        (f64.store offset=8 (local.get $cr)
          (f64.add (f64.load offset=8 (local.get $cr))
            (f64.mul (local.get $sign) (f64.add (f64x2.extract_lane 0 (local.get $acc21)) (f64x2.extract_lane 1 (local.get $acc21))))))
        (local.set $cr (i32.add (local.get $cr) (local.get $ldc)))
        (f64.store (local.get $cr)
          (f64.add (f64.load (local.get $cr))
            (f64.mul (local.get $sign) (f64.add (f64x2.extract_lane 0 (local.get $acc30)) (f64x2.extract_lane 1 (local.get $acc30))))))
        (f64.store offset=8 (local.get $cr)
          (f64.add (f64.load offset=8 (local.get $cr))
            (f64.mul (local.get $sign) (f64.add (f64x2.extract_lane 0 (local.get $acc31)) (f64x2.extract_lane 1 (local.get $acc31))))))
        (local.set $b (i32.add (i32.add (local.get $b) (local.get $ldb)) (local.get $ldb)))
        (local.set $c (i32.add (local.get $c) (i32.const 16)))
        (local.set $pairs (i32.sub (local.get $pairs) (i32.const 1)))
        (br $pair))))

  (export "nt4x2" (func $nt4x2)))
