/*
 * Holds GPU memory through the CUDA driver API, for the real-driver check
 * (scripts/real-gpu-check.sh): a process that uses a GPU without a
 * reservation, as a user's stray job would.
 *
 * No CUDA headers or toolkit are needed: libcuda.so.1 (installed with the
 * NVIDIA driver) is loaded with dlopen and the few entry points are declared
 * here with the driver API's documented signatures.
 *
 * Build:  gcc -O2 -o cuda_alloc cuda_alloc.c -ldl
 * Usage:  cuda_alloc <gpu_ordinal> <mib>
 *   Allocates <mib> MiB on the GPU with that CUDA ordinal (run it with
 *   CUDA_DEVICE_ORDER=PCI_BUS_ID so that the ordinal is NVML's index), prints
 *   "ready <pid>" on stdout, then holds the memory until stdin reaches end of
 *   file or the process gets SIGTERM/SIGINT, and frees it before exiting.
 * It changes no GPU setting: one context, one allocation, nothing else.
 * Exit status: 0 after a clean hold, 2 usage, 3 no driver library, 4 a CUDA
 * call failed (its name and error code go to stderr).
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;

typedef CUresult (*cuInit_t)(unsigned int);
typedef CUresult (*cuDeviceGet_t)(CUdevice *, int);
typedef CUresult (*cuCtxCreate_t)(CUcontext *, unsigned int, CUdevice);
typedef CUresult (*cuMemAlloc_t)(CUdeviceptr *, size_t);
typedef CUresult (*cuMemFree_t)(CUdeviceptr);
typedef CUresult (*cuCtxDestroy_t)(CUcontext);

static volatile sig_atomic_t stop_requested;

static void on_signal(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

static void *symbol(void *library, const char *name) {
    void *address = dlsym(library, name);
    if (address == NULL) {
        fprintf(stderr, "cuda_alloc: libcuda.so.1 has no %s\n", name);
        exit(3);
    }
    return address;
}

static void check(CUresult result, const char *call) {
    if (result != 0) {
        fprintf(stderr, "cuda_alloc: %s failed with CUDA error %d\n", call, result);
        exit(4);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: cuda_alloc <gpu_ordinal> <mib>\n");
        return 2;
    }
    char *end = NULL;
    long ordinal = strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || ordinal < 0 || ordinal > 1023) {
        fprintf(stderr, "cuda_alloc: bad GPU ordinal '%s'\n", argv[1]);
        return 2;
    }
    long long mib = strtoll(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || mib <= 0 || mib > (1LL << 24)) {
        fprintf(stderr, "cuda_alloc: bad size '%s' (MiB)\n", argv[2]);
        return 2;
    }

    void *library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        fprintf(stderr, "cuda_alloc: cannot load libcuda.so.1: %s\n", dlerror());
        return 3;
    }
    cuInit_t cu_init = (cuInit_t)symbol(library, "cuInit");
    cuDeviceGet_t cu_device_get = (cuDeviceGet_t)symbol(library, "cuDeviceGet");
    cuCtxCreate_t cu_ctx_create = (cuCtxCreate_t)symbol(library, "cuCtxCreate_v2");
    cuMemAlloc_t cu_mem_alloc = (cuMemAlloc_t)symbol(library, "cuMemAlloc_v2");
    cuMemFree_t cu_mem_free = (cuMemFree_t)symbol(library, "cuMemFree_v2");
    cuCtxDestroy_t cu_ctx_destroy = (cuCtxDestroy_t)symbol(library, "cuCtxDestroy_v2");

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    CUdevice device;
    CUcontext context;
    CUdeviceptr memory;
    check(cu_init(0), "cuInit");
    check(cu_device_get(&device, (int)ordinal), "cuDeviceGet");
    check(cu_ctx_create(&context, 0, device), "cuCtxCreate_v2");
    check(cu_mem_alloc(&memory, (size_t)mib * 1048576ULL), "cuMemAlloc_v2");

    printf("ready %ld\n", (long)getpid());
    fflush(stdout);
    char buffer[64];
    while (!stop_requested && read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
    }

    check(cu_mem_free(memory), "cuMemFree_v2");
    check(cu_ctx_destroy(context), "cuCtxDestroy_v2");
    return 0;
}
