/*
 * A fake libcuda.so.1, so that scripts/real-gpu-check.sh can be tested
 * without a GPU: together with the NVML stub (nvml_stub.c) it plays a driver
 * on which cuda_alloc's allocation shows up as a compute process.
 *
 * cuMemAlloc_v2 appends "proc <target> <pid> <mib>" to the NVML stub's
 * configuration file (named by $CANHAZGPU_NVML_STUB), which the NVML stub
 * reads at every initialisation; cuMemFree_v2 removes that line again.
 * The target is the device the context's ordinal means, as CUDA would pick
 * it: the ordinal-th entry of $CUDA_VISIBLE_DEVICES (an NVML index, or a MIG
 * device's UUID, looked up in the stub's mig_device lines as <gpu>/<slot>),
 * or the ordinal itself without that variable.
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
static char entry[256];

/* The NVML stub's target for a MIG device's UUID, from its mig_device lines. */
static int mig_target(const char *path, const char *uuid, char *target, size_t cap) {
    char line[512], word[16], found[128];
    unsigned int gpu, slot;
    FILE *config = fopen(path, "r");
    int ok = 0;
    if (config == NULL)
        return 0;
    while (!ok && fgets(line, sizeof line, config) != NULL) {
        if (sscanf(line, "%15s %u %u %127s", word, &gpu, &slot, found) == 4 &&
            strcmp(word, "mig_device") == 0 && strcmp(found, uuid) == 0) {
            snprintf(target, cap, "%u/%u", gpu, slot);
            ok = 1;
        }
    }
    fclose(config);
    return ok;
}

/* What the stub's proc line names for `ordinal`; 0 when CUDA would find no device. */
static int target_of(const char *path, int ordinal, char *target, size_t cap) {
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    char name[128];
    size_t length;
    int index;
    if (visible == NULL) {
        snprintf(target, cap, "%d", ordinal);
        return 1;
    }
    for (index = 0; index < ordinal && visible != NULL; index++) {
        visible = strchr(visible, ',');
        if (visible != NULL)
            visible++;
    }
    if (visible == NULL)
        return 0;
    length = strcspn(visible, ",");
    if (length == 0 || length >= sizeof name)
        return 0;
    memcpy(name, visible, length);
    name[length] = '\0';
    if (strncmp(name, "MIG-", 4) == 0)
        return mig_target(path, name, target, cap);
    snprintf(target, cap, "%s", name);
    return 1;
}

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
    char target[128];
    if (path == NULL || *path == '\0')
        return CUDA_ERROR_UNKNOWN;
    if (!target_of(path, current_ordinal, target, sizeof target))
        return CUDA_ERROR_INVALID_VALUE;
    snprintf(entry, sizeof entry, "proc %s %ld %llu\n", target, (long)getpid(),
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
