/*
 * A fake libcuda.so.1, so that scripts/real-gpu-check.sh can be tested
 * without a GPU: together with the NVML stub (nvml_stub.c) it plays a driver
 * on which cuda_alloc's allocation shows up as a compute process.
 *
 * cuMemAlloc_v2 appends "proc <ordinal> <pid> <mib>" to the NVML stub's
 * configuration file (named by $CANHAZGPU_NVML_STUB), which the NVML stub
 * reads at every initialisation; cuMemFree_v2 removes that line again.
 * Every other entry point cuda_alloc uses succeeds and does nothing.
 *
 * Build:  gcc -shared -fPIC -o <dir>/libcuda.so.1 cuda_stub.c
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_UNKNOWN 999

static int current_ordinal;
static char entry[128];

CUresult cuInit(unsigned int flags) {
    (void)flags;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(int *device, int ordinal) {
    *device = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuCtxCreate_v2(void **context, unsigned int flags, int device) {
    (void)flags;
    current_ordinal = device;
    *context = &current_ordinal;
    return CUDA_SUCCESS;
}

CUresult cuCtxDestroy_v2(void *context) {
    (void)context;
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(unsigned long long *pointer, size_t bytes) {
    const char *path = getenv("CANHAZGPU_NVML_STUB");
    if (path == NULL || *path == '\0')
        return CUDA_ERROR_UNKNOWN;
    snprintf(entry, sizeof entry, "proc %d %ld %llu\n", current_ordinal, (long)getpid(),
             (unsigned long long)(bytes / 1048576));
    FILE *config = fopen(path, "a");
    if (config == NULL)
        return CUDA_ERROR_UNKNOWN;
    fputs(entry, config);
    fclose(config);
    *pointer = 0x1000;
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(unsigned long long pointer) {
    (void)pointer;
    const char *path = getenv("CANHAZGPU_NVML_STUB");
    if (path == NULL || *path == '\0')
        return CUDA_ERROR_UNKNOWN;
    FILE *config = fopen(path, "r");
    if (config == NULL)
        return CUDA_ERROR_UNKNOWN;
    static char kept[1 << 16];
    size_t used = 0;
    char line[512];
    while (fgets(line, sizeof line, config) != NULL) {
        size_t length = strlen(line);
        if (strcmp(line, entry) != 0 && used + length < sizeof kept) {
            memcpy(kept + used, line, length);
            used += length;
        }
    }
    fclose(config);
    config = fopen(path, "w");
    if (config == NULL)
        return CUDA_ERROR_UNKNOWN;
    fwrite(kept, 1, used, config);
    fclose(config);
    return CUDA_SUCCESS;
}
