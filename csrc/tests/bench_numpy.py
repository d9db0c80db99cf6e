"""numpy float32 matmul on the shapes of bench_kernels.c, for context.
Raw product only (no epilogue), single thread, CPU time of this thread.
Run: OPENBLAS_NUM_THREADS=1 taskset -c 0 python3 bench_numpy.py"""
import time
import numpy as np

shapes = [(256, 256, 784, 0, 0), (32, 256, 784, 0, 0), (256, 128, 256, 0, 0), (256, 10, 128, 0, 0),
          (256, 1024, 784, 0, 0), (256, 1024, 1024, 0, 0), (256, 64, 784, 0, 0), (256, 128, 784, 0, 0),
          (256, 784, 256, 0, 1), (256, 256, 128, 0, 1), (32, 256, 128, 0, 1), (256, 1024, 1024, 0, 1),
          (784, 256, 256, 1, 0), (784, 256, 32, 1, 0), (256, 128, 256, 1, 0), (1024, 1024, 256, 1, 0),
          (1024, 1024, 1024, 0, 0)]
rng = np.random.default_rng(0)
for M, N, K, ta, tb in shapes:
    A = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
    a = A.T if ta else A
    b = B.T if tb else B
    C = np.empty((M, N), np.float32)
    reps = int(2e7 / (2 * M * N * K)) + 1
    best = 1e30
    np.matmul(a, b, out=C)
    for _ in range(7):
        t0 = time.thread_time()
        for _ in range(reps):
            np.matmul(a, b, out=C)
        best = min(best, (time.thread_time() - t0) / reps)
    print(f"{M:5d} {N:5d} {K:5d} {ta} {tb} {2 * M * N * K / best * 1e-9:8.1f}")
