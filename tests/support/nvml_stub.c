/*
 * A fake libnvidia-ml.so.1 for canhazgpu's tests.
 *
 * It implements just the NVML entry points that nvml-wrapper 0.13 calls
 * while canhazgpu probes GPUs, with the real NVML struct layouts, so tests
 * can describe GPUs, processes and failures without NVIDIA hardware.
 *
 * Build:  gcc -shared -fPIC -o <dir>/libnvidia-ml.so.1 nvml_stub.c -ldl
 *   -DNO_V3         omit nvmlDeviceGetComputeRunningProcesses_v3 (the symbol
 *                   is truly absent, as with drivers before R510)
 *   -DNO_MEMORY_V2  omit nvmlDeviceGetMemoryInfo_v2 (also absent before R510)
 *   -DNO_SHUTDOWN   omit nvmlShutdown (a broken library; nvml-wrapper's Drop
 *                   would panic on it)
 *
 * Configuration is read at every nvmlInit_v2 / nvmlInitWithFlags that is not
 * nested inside another (NVML reference-counts init/shutdown), by stub_config.h
 * (shared with the AMD SMI stub), from:
 *   1. the file named by $CANHAZGPU_NVML_STUB, if that variable is set and
 *      non-empty; otherwise
 *   2. nvml_stub.conf in the directory holding this library, which lets
 *      tests running in parallel threads of one process each use their own
 *      copy of the library without touching the process environment.
 * If neither can be opened, init fails with NVML_ERROR_UNKNOWN (999) and a
 * line on stderr says why.
 *
 * File format: one directive per line, fields separated by blanks; blank
 * lines and lines starting with '#' are ignored.
 *   driver <version>                      nvmlSystemGetDriverVersion result
 *                                         (default "999.99.99-stub")
 *   gpu <uuid> <total_mib> <used_mib> <name...>
 *                                         a GPU; indices follow file order;
 *                                         the name is the rest of the line
 *                                         and may contain spaces
 *   proc <target> <pid> <used_mib|na>     a compute process on a GPU (target
 *                                         <gpu_index>) or on one of its MIG
 *                                         devices (<gpu_index>/<slot>); "na"
 *                                         reports the memory as
 *                                         NVML_VALUE_NOT_AVAILABLE
 *   mig <gpu_index> <0|1>                 the GPU supports MIG, with MIG mode
 *                                         off (0) or on (1); GPUs without a mig
 *                                         line answer NOT_SUPPORTED, as GPUs
 *                                         without MIG do
 *   mig_device <gpu_index> <slot> <uuid> <total_mib> <used_mib> <name...>
 *                                         a MIG device (one compute instance) at
 *                                         MIG device index <slot> (0-6) of a GPU;
 *                                         slots without one answer NOT_FOUND
 *   mig_error <gpu_index> <code>          listing the GPU's MIG devices fails so
 *   init_error <code>                     nvmlInit* return this NVML code,
 *                                         e.g. 9 = DRIVER_NOT_LOADED,
 *                                         4 = NO_PERMISSION
 *   count_error <code>                    nvmlDeviceGetCount_v2 fails so
 *   memory_error <gpu_index> <code>       both memory queries fail so
 *   proc_error <gpu_index> <code>         both process queries fail so
 * At most 16 GPUs, 32 MIG devices and 64 processes; lines are at most 510
 * characters.
 * Lines that do not parse, or exceed a limit, are skipped with a note on
 * stderr rather than crashing the process under test.
 */

#define _GNU_SOURCE
#include <string.h>

#define STUB_NAME "nvml_stub"
#define STUB_CONFIG_ENV "CANHAZGPU_NVML_STUB"
#include "stub_config.h"

typedef int nvmlReturn_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NO_PERMISSION 4
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25
#define NVML_ERROR_UNKNOWN 999

#define MAX_GPUS 16
#define MAX_MIGS 32
#define MAX_PROCS 64
#define MAX_MIG_SLOTS 7 /* what an A100 or H100 reports as its maximum */
#define NO_SLOT 0xFFFFFFFFu
#define NAME_LEN 96    /* NVML_DEVICE_NAME_V2_BUFFER_SIZE */
#define UUID_LEN 96    /* NVML_DEVICE_UUID_V2_BUFFER_SIZE */
#define VERSION_LEN 80 /* NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE */
#define MIB 1048576ULL
#define VALUE_NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL /* (unsigned long long)-1 */
#define NO_INSTANCE 0xFFFFFFFFu

/* Layouts as in nvml.h / nvml-wrapper-sys 0.10 bindings.rs. */
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

#define nvmlMemory_v2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))

/* nvmlProcessInfo_t, used by both the _v2 and _v3 process queries. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

/* A GPU, or a MIG device of one (parent and slot set). */
struct gpu {
    char name[NAME_LEN];
    char uuid[UUID_LEN];
    unsigned long long total_mib, used_mib;
    nvmlReturn_t memory_error, proc_error, mig_error;
    int mig_capable, mig_mode;
    unsigned int parent, slot;
};

struct proc {
    unsigned int gpu, slot, pid;
    unsigned long long used_bytes;
};

/* Opaque to callers: a handle is a pointer into gpus[] or migs[]. */
typedef struct gpu *nvmlDevice_t;

static int init_count;
static char driver_version[VERSION_LEN];
static struct gpu gpus[MAX_GPUS];
static unsigned int gpu_count;
static struct gpu migs[MAX_MIGS];
static unsigned int mig_count;
static struct proc procs[MAX_PROCS];
static unsigned int proc_count;
static nvmlReturn_t init_error, count_error;

/* "<gpu>" or "<gpu>/<slot>"; the slot is NO_SLOT for the GPU itself. */
static int parse_target(char *s, unsigned int *gpu, unsigned int *slot)
{
    char *slash = s == NULL ? NULL : strchr(s, '/');
    *slot = NO_SLOT;
    if (slash != NULL) {
        *slash = '\0';
        if (!parse_u32(slash + 1, slot) || *slot >= MAX_MIG_SLOTS)
            return 0;
    }
    return parse_u32(s, gpu);
}

/* MiB counts above this would overflow when converted to bytes. */
static int mib_ok(unsigned long long mib)
{
    return mib <= 0xFFFFFFFFFFFFFFFFULL / MIB;
}

/* One line that is not blank or a comment, from read_config (stub_config.h). */
static void parse_line(char *line, const char *path, unsigned lineno)
{
    char *cursor = line;
    char *word = next_word(&cursor);

    if (strcmp(word, "driver") == 0) {
        if (!copy_field(driver_version, sizeof driver_version, rest_of_line(&cursor)))
            note(path, lineno, "driver needs a version shorter than 80 bytes");
    } else if (strcmp(word, "gpu") == 0) {
        struct gpu g;
        memset(&g, 0, sizeof g);
        if (gpu_count >= MAX_GPUS) {
            note(path, lineno, "too many gpus");
            return;
        }
        if (!copy_field(g.uuid, sizeof g.uuid, next_word(&cursor)) ||
            !parse_u64(next_word(&cursor), &g.total_mib) ||
            !parse_u64(next_word(&cursor), &g.used_mib) ||
            !copy_field(g.name, sizeof g.name, rest_of_line(&cursor)) || !mib_ok(g.total_mib) ||
            !mib_ok(g.used_mib) || g.used_mib > g.total_mib) {
            note(path, lineno, "expected: gpu <uuid> <total_mib> <used_mib> <name...>");
            return;
        }
        /* Keep what earlier lines attached to this index. */
        g.memory_error = gpus[gpu_count].memory_error;
        g.proc_error = gpus[gpu_count].proc_error;
        g.mig_error = gpus[gpu_count].mig_error;
        g.mig_capable = gpus[gpu_count].mig_capable;
        g.mig_mode = gpus[gpu_count].mig_mode;
        g.parent = g.slot = NO_SLOT;
        gpus[gpu_count++] = g;
    } else if (strcmp(word, "proc") == 0) {
        struct proc p;
        char *mem;
        unsigned long long mib;
        if (proc_count >= MAX_PROCS) {
            note(path, lineno, "too many procs");
            return;
        }
        if (!parse_target(next_word(&cursor), &p.gpu, &p.slot) ||
            !parse_u32(next_word(&cursor), &p.pid)) {
            note(path, lineno, "expected: proc <gpu_index>[/<slot>] <pid> <used_mib|na>");
            return;
        }
        mem = next_word(&cursor);
        if (mem != NULL && strcmp(mem, "na") == 0) {
            p.used_bytes = VALUE_NOT_AVAILABLE;
        } else if (parse_u64(mem, &mib) && mib_ok(mib)) {
            p.used_bytes = mib * MIB;
        } else {
            note(path, lineno, "expected: proc <gpu_index>[/<slot>] <pid> <used_mib|na>");
            return;
        }
        procs[proc_count++] = p;
    } else if (strcmp(word, "init_error") == 0 || strcmp(word, "count_error") == 0) {
        unsigned int code;
        if (!parse_u32(next_word(&cursor), &code)) {
            note(path, lineno, "expected an NVML return code");
            return;
        }
        if (word[0] == 'i')
            init_error = (nvmlReturn_t)code;
        else
            count_error = (nvmlReturn_t)code;
    } else if (strcmp(word, "memory_error") == 0 || strcmp(word, "proc_error") == 0 ||
               strcmp(word, "mig_error") == 0 || strcmp(word, "mig") == 0) {
        /* GPU lines may come later, so the index is checked on use, not here. */
        unsigned int index, code;
        if (!parse_u32(next_word(&cursor), &index) || index >= MAX_GPUS ||
            !parse_u32(next_word(&cursor), &code)) {
            note(path, lineno, "expected: <directive> <gpu_index> <number>");
            return;
        }
        if (strcmp(word, "memory_error") == 0) {
            gpus[index].memory_error = (nvmlReturn_t)code;
        } else if (strcmp(word, "proc_error") == 0) {
            gpus[index].proc_error = (nvmlReturn_t)code;
        } else if (strcmp(word, "mig_error") == 0) {
            gpus[index].mig_error = (nvmlReturn_t)code;
        } else {
            gpus[index].mig_capable = 1;
            gpus[index].mig_mode = code != 0;
        }
    } else if (strcmp(word, "mig_device") == 0) {
        struct gpu m;
        memset(&m, 0, sizeof m);
        if (mig_count >= MAX_MIGS) {
            note(path, lineno, "too many mig_devices");
            return;
        }
        if (!parse_u32(next_word(&cursor), &m.parent) || m.parent >= MAX_GPUS ||
            !parse_u32(next_word(&cursor), &m.slot) || m.slot >= MAX_MIG_SLOTS ||
            !copy_field(m.uuid, sizeof m.uuid, next_word(&cursor)) ||
            !parse_u64(next_word(&cursor), &m.total_mib) ||
            !parse_u64(next_word(&cursor), &m.used_mib) ||
            !copy_field(m.name, sizeof m.name, rest_of_line(&cursor)) || !mib_ok(m.total_mib) ||
            !mib_ok(m.used_mib) || m.used_mib > m.total_mib) {
            note(path, lineno,
                 "expected: mig_device <gpu_index> <slot> <uuid> <total_mib> <used_mib> <name...>");
            return;
        }
        migs[mig_count++] = m;
    } else {
        note(path, lineno, "unknown directive");
    }
}

static void reset(void)
{
    memset(gpus, 0, sizeof gpus);
    memset(migs, 0, sizeof migs);
    memset(procs, 0, sizeof procs);
    gpu_count = mig_count = proc_count = 0;
    init_error = count_error = NVML_SUCCESS;
    strcpy(driver_version, "999.99.99-stub");
}

static nvmlReturn_t load_config(void)
{
    reset();
    return read_config(parse_line) ? init_error : NVML_ERROR_UNKNOWN;
}

static nvmlReturn_t do_init(void)
{
    nvmlReturn_t rc;
    if (init_count > 0) {
        init_count++;
        return NVML_SUCCESS;
    }
    rc = load_config();
    if (rc == NVML_SUCCESS)
        init_count = 1;
    return rc;
}

nvmlReturn_t nvmlInit_v2(void)
{
    return do_init();
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    return do_init();
}

#ifndef NO_SHUTDOWN
nvmlReturn_t nvmlShutdown(void)
{
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    init_count--;
    return NVML_SUCCESS;
}
#endif

const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS:
        return "Success";
    case NVML_ERROR_UNINITIALIZED:
        return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT:
        return "Invalid Argument";
    case NVML_ERROR_INSUFFICIENT_SIZE:
        return "Insufficient Size";
    case NVML_ERROR_NOT_SUPPORTED:
        return "Not Supported";
    case NVML_ERROR_NOT_FOUND:
        return "Not Found";
    case NVML_ERROR_NO_PERMISSION:
        return "Insufficient Permissions";
    case NVML_ERROR_DRIVER_NOT_LOADED:
        return "Driver Not Loaded";
    default:
        return "Unknown Error";
    }
}

static nvmlReturn_t copy_out(char *dst, unsigned int len, const char *src)
{
    if (dst == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) >= len)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    return copy_out(version, length, driver_version);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (count_error != NVML_SUCCESS)
        return count_error;
    *count = gpu_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (device == NULL || index >= gpu_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return NVML_SUCCESS;
}

/* Maps a handle back to its GPU or MIG device, or NULL if it is not one of ours. */
static struct gpu *lookup(nvmlDevice_t device)
{
    unsigned int i;
    if (init_count == 0)
        return NULL;
    for (i = 0; i < gpu_count; i++)
        if (device == &gpus[i])
            return &gpus[i];
    for (i = 0; i < mig_count; i++)
        if (device == &migs[i] && migs[i].parent < gpu_count)
            return &migs[i];
    return NULL;
}

static int is_mig(const struct gpu *g)
{
    return g->slot != NO_SLOT;
}

/* The GPU index and MIG slot a proc line must name to be on this device. */
static void target_of(const struct gpu *g, unsigned int *gpu, unsigned int *slot)
{
    if (is_mig(g)) {
        *gpu = g->parent;
        *slot = g->slot;
    } else {
        *gpu = (unsigned int)(g - gpus);
        *slot = NO_SLOT;
    }
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    struct gpu *g = lookup(device);
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    return copy_out(name, length, g->name);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    struct gpu *g = lookup(device);
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    return copy_out(uuid, length, g->uuid);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    struct gpu *g = lookup(device);
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    if (memory == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (g->memory_error != NVML_SUCCESS)
        return g->memory_error;
    memory->total = g->total_mib * MIB;
    memory->used = g->used_mib * MIB;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

#ifndef NO_MEMORY_V2
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    struct gpu *g = lookup(device);
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    if (memory == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* The real library rejects a caller whose struct layout differs. */
    if (memory->version != nvmlMemory_v2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    if (g->memory_error != NVML_SUCCESS)
        return g->memory_error;
    memory->total = g->total_mib * MIB;
    memory->reserved = 0;
    memory->used = g->used_mib * MIB;
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}
#endif

/* The _v2 and _v3 queries share one contract: with *count too small
 * (callers probe with 0 and a NULL array) report the needed size. */
static nvmlReturn_t running_processes(nvmlDevice_t device, unsigned int *count,
                                      nvmlProcessInfo_t *infos)
{
    struct gpu *g = lookup(device);
    unsigned int gpu, slot, i, n = 0;

    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    if (count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (g->proc_error != NVML_SUCCESS)
        return g->proc_error;
    target_of(g, &gpu, &slot);
    for (i = 0; i < proc_count; i++)
        if (procs[i].gpu == gpu && procs[i].slot == slot)
            n++;
    if (*count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (n > 0 && infos == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    n = 0;
    for (i = 0; i < proc_count; i++) {
        if (procs[i].gpu != gpu || procs[i].slot != slot)
            continue;
        infos[n].pid = procs[i].pid;
        infos[n].usedGpuMemory = procs[i].used_bytes;
        /* The stub's slot doubles as the instance ids, which NVML leaves unset
         * (0xFFFFFFFF) outside MIG mode. */
        infos[n].gpuInstanceId = slot == NO_SLOT ? NO_INSTANCE : slot;
        infos[n].computeInstanceId = slot == NO_SLOT ? NO_INSTANCE : 0;
        n++;
    }
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device,
                                                     unsigned int *count,
                                                     nvmlProcessInfo_t *infos)
{
    return running_processes(device, count, infos);
}

#ifndef NO_V3
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                     unsigned int *count,
                                                     nvmlProcessInfo_t *infos)
{
    return running_processes(device, count, infos);
}
#endif

/* MIG: nvml-wrapper's Device::mig_mode, mig_device_count (the maximum),
 * mig_device_by_index, mig_is_mig_device_handle and mig_parent_device. */

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode,
                                  unsigned int *pendingMode)
{
    struct gpu *g = lookup(device);
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    if (currentMode == NULL || pendingMode == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (is_mig(g) || !g->mig_capable)
        return NVML_ERROR_NOT_SUPPORTED;
    *currentMode = *pendingMode = (unsigned int)g->mig_mode;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count)
{
    struct gpu *g = lookup(device);
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    if (count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (is_mig(g) || !g->mig_capable)
        return NVML_ERROR_NOT_SUPPORTED;
    if (g->mig_error != NVML_SUCCESS)
        return g->mig_error;
    *count = MAX_MIG_SLOTS;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                 nvmlDevice_t *migDevice)
{
    struct gpu *g = lookup(device);
    unsigned int parent, i;
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    if (migDevice == NULL || index >= MAX_MIG_SLOTS)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (is_mig(g) || !g->mig_capable)
        return NVML_ERROR_NOT_SUPPORTED;
    if (g->mig_error != NVML_SUCCESS)
        return g->mig_error;
    parent = (unsigned int)(g - gpus);
    /* Instances exist only while MIG mode is on. */
    for (i = 0; g->mig_mode && i < mig_count; i++) {
        if (migs[i].parent == parent && migs[i].slot == index) {
            *migDevice = &migs[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice)
{
    struct gpu *g = lookup(device);
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    if (isMigDevice == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *isMigDevice = (unsigned int)is_mig(g);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice,
                                                          nvmlDevice_t *device)
{
    struct gpu *g = lookup(migDevice);
    if (g == NULL)
        return init_count == 0 ? NVML_ERROR_UNINITIALIZED : NVML_ERROR_INVALID_ARGUMENT;
    if (device == NULL || !is_mig(g))
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[g->parent];
    return NVML_SUCCESS;
}
