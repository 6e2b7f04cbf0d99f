/* Peak int8 multiply-accumulate rate of one x86-64 core with AVX2, for benchmarks/project.py.
 *
 * int8 GEMM kernels without VNNI (XNNPACK's AVX2 path, which ai-edge-litert and tflite-runtime use here)
 * widen int8 to int16 and multiply-add pairs with VPMADDWD: 16 products per 256-bit instruction.  Twelve
 * independent chains hide the instruction's latency, so the loop runs at the instruction's throughput.
 * Prints multiply-accumulates per second (then a digit that only keeps the chains alive).  Build: cc -O3 -mavx2 peak_int8.c -o peak_int8
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define CHAINS 12
#define MACS_PER_INSTRUCTION 16

int main(void) {
    __m256i acc[CHAINS];
    const __m256i w = _mm256_set1_epi16(3);
    for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_set1_epi16((short)(j + 1));
    const long rounds = 50000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < rounds; k++)
        for (int j = 0; j < CHAINS; j++) acc[j] = _mm256_madd_epi16(acc[j], w);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int sink = 0;  /* use every chain, so none is optimised away */
    for (int j = 0; j < CHAINS; j++) sink ^= _mm256_extract_epi32(acc[j], 0);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%.0f %d\n", (double)rounds * CHAINS * MACS_PER_INSTRUCTION / seconds, sink & 1);
    return 0;
}
