/*
 * A fake libamd_smi.so (ROCm's AMD SMI library) for canhazgpu's tests.
 *
 * It implements the AMD SMI entry points canhazgpu calls, with the names, enums and
 * struct layouts of ROCm's amd_smi/amdsmi.h, so tests can describe AMD GPUs, their
 * processes and failures without AMD hardware.
 *
 * Build:  gcc -shared -fPIC -o <dir>/libamd_smi.so amd_smi_stub.c -ldl
 *   -DSHORT_RECORDS  amdsmi_proc_info_t as in ROCm 6.1 to 6.3 (32-byte strings)
 *                    instead of ROCm 6.4 and later (256-byte strings)
 *   -DPROCESS_PIDS   the process list of releases before ROCm 6.1: an array of pids,
 *                    each asked with amdsmi_get_gpu_process_info
 *   -DNO_SHUTDOWN    omit amdsmi_shut_down (a broken or foreign library)
 *
 * Configuration is read at every amdsmi_init (by stub_config.h, shared with the NVML
 * stub), from:
 *   1. the file named by $CANHAZGPU_AMD_SMI_STUB, if set and non-empty; otherwise
 *   2. amd_smi_stub.conf in the directory holding this library.
 * If neither can be opened, init fails with AMDSMI_STATUS_INIT_ERROR (18) and a line
 * on stderr says why.
 *
 * File format: one directive per line, fields separated by blanks; blank lines and
 * lines starting with '#' are ignored.
 *   driver <version>                    amdsmi_get_gpu_driver_info's driver_version
 *                                       (default "6.10.5-stub")
 *   gpu <uuid|-> <total_mib> <used_mib> <name...>
 *                                       an AMD GPU on the current socket; "-" makes
 *                                       the UUID query fail; the name (the ASIC's
 *                                       market name) is the rest of the line, "-"
 *                                       for none
 *   cpu                                 a processor that is not a GPU, on the current
 *                                       socket (AMDSMI_PROCESSOR_TYPE_AMD_CPU)
 *   socket                              later processors are on a new socket
 *   proc <gpu_index> <pid> <vram_mib>   a process using that GPU
 *   init_error <code>                   amdsmi_init returns this status, e.g.
 *                                       34 = DRIVER_NOT_LOADED, 10 = NO_PERM
 *   memory_error <gpu_index> <code>     both memory queries fail so
 *   proc_error <gpu_index> <code>       the process list fails so
 * GPU indices count GPUs only, in file order. At most 16 processors, 8 sockets and
 * 64 processes; lines are at most 510 characters. Lines that do not parse are
 * skipped with a note on stderr.
 */

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define STUB_NAME "amd_smi_stub"
#define STUB_CONFIG_ENV "CANHAZGPU_AMD_SMI_STUB"
#include "stub_config.h"

typedef uint32_t amdsmi_status_t;
typedef void *amdsmi_socket_handle;
typedef void *amdsmi_processor_handle;
typedef uint32_t amdsmi_process_handle_t;

#define AMDSMI_STATUS_SUCCESS 0
#define AMDSMI_STATUS_INVAL 1
#define AMDSMI_STATUS_NOT_SUPPORTED 2
#define AMDSMI_STATUS_NO_PERM 10
#define AMDSMI_STATUS_OUT_OF_RESOURCES 15
#define AMDSMI_STATUS_INIT_ERROR 18
#define AMDSMI_STATUS_NOT_INIT 32
#define AMDSMI_STATUS_DRIVER_NOT_LOADED 34

#define AMDSMI_INIT_AMD_GPUS (1 << 1)
#define AMDSMI_MEM_TYPE_VRAM 0

typedef enum {
    AMDSMI_PROCESSOR_TYPE_UNKNOWN = 0,
    AMDSMI_PROCESSOR_TYPE_AMD_GPU,
    AMDSMI_PROCESSOR_TYPE_AMD_CPU,
    AMDSMI_PROCESSOR_TYPE_NON_AMD_GPU,
    AMDSMI_PROCESSOR_TYPE_NON_AMD_CPU,
    AMDSMI_PROCESSOR_TYPE_AMD_CPU_CORE,
    AMDSMI_PROCESSOR_TYPE_AMD_APU
} processor_type_t;

#define AMDSMI_MAX_STRING_LENGTH 256
#define AMDSMI_NORMAL_STRING_LENGTH 32
#define AMDSMI_GPU_UUID_SIZE 38

typedef struct {
    char market_name[AMDSMI_MAX_STRING_LENGTH];
    uint32_t vendor_id;
    char vendor_name[AMDSMI_MAX_STRING_LENGTH];
    uint32_t subvendor_id;
    uint64_t device_id;
    uint32_t rev_id;
    char asic_serial[AMDSMI_MAX_STRING_LENGTH];
    uint32_t oam_id;
    uint32_t num_of_compute_units;
    uint64_t target_graphics_version;
    uint32_t subsystem_id;
    uint32_t reserved[21];
} amdsmi_asic_info_t;

typedef struct {
    char driver_version[AMDSMI_MAX_STRING_LENGTH];
    char driver_date[AMDSMI_MAX_STRING_LENGTH];
    char driver_name[AMDSMI_MAX_STRING_LENGTH];
} amdsmi_driver_info_t;

#ifdef SHORT_RECORDS
#define PROC_STRING AMDSMI_NORMAL_STRING_LENGTH
#else
#define PROC_STRING AMDSMI_MAX_STRING_LENGTH
#endif

typedef struct {
    char name[PROC_STRING];
    amdsmi_process_handle_t pid;
    uint64_t mem;
    struct {
        uint64_t gfx;
        uint64_t enc;
        uint32_t reserved[12];
    } engine_usage;
    struct {
        uint64_t gtt_mem;
        uint64_t cpu_mem;
        uint64_t vram_mem;
        uint32_t reserved[10];
    } memory_usage;
    char container_name[PROC_STRING];
#ifdef SHORT_RECORDS
    uint32_t reserved[4];
#else
    uint32_t cu_occupancy;
    uint32_t evicted_time;
    uint32_t reserved[10];
#endif
} amdsmi_proc_info_t;

/* canhazgpu reads these fields at fixed places (src/gpu/amd/records.rs). */
#ifdef SHORT_RECORDS
_Static_assert(sizeof(amdsmi_proc_info_t) == 224, "ROCm 6.1-6.3 record size");
_Static_assert(offsetof(amdsmi_proc_info_t, pid) == 32, "pid");
_Static_assert(offsetof(amdsmi_proc_info_t, memory_usage.vram_mem) == 128, "vram_mem");
#else
_Static_assert(sizeof(amdsmi_proc_info_t) == 704, "ROCm 6.4 record size");
_Static_assert(offsetof(amdsmi_proc_info_t, pid) == 256, "pid");
_Static_assert(offsetof(amdsmi_proc_info_t, memory_usage.vram_mem) == 352, "vram_mem");
#endif

#define MAX_PROCESSORS 16
#define MAX_SOCKETS 8
#define MAX_PROCS 64
#define MIB 1048576ULL

struct processor {
    processor_type_t type;
    unsigned int socket;
    char name[AMDSMI_MAX_STRING_LENGTH];
    char uuid[AMDSMI_GPU_UUID_SIZE + 8];
    int uuid_fails;
    unsigned long long total_mib, used_mib;
};

struct proc {
    unsigned int gpu, pid;
    unsigned long long vram_mib;
};

static int initialised;
static char driver_version[AMDSMI_MAX_STRING_LENGTH];
static struct processor processors[MAX_PROCESSORS];
static unsigned int processor_count;
static char sockets[MAX_SOCKETS]; /* handles point here */
static unsigned int socket_count;
static struct proc procs[MAX_PROCS];
static unsigned int proc_count;
static amdsmi_status_t init_error;
/* Failures by GPU index, looked up on use: their lines may come before or after. */
static amdsmi_status_t memory_errors[MAX_PROCESSORS], proc_errors[MAX_PROCESSORS];

static int add_processor(struct processor *p, const char *path, unsigned lineno)
{
    if (processor_count >= MAX_PROCESSORS) {
        note(path, lineno, "too many processors");
        return 0;
    }
    if (socket_count == 0)
        socket_count = 1;
    p->socket = socket_count - 1;
    processors[processor_count++] = *p;
    return 1;
}

static void parse_gpu(char *cursor, const char *path, unsigned lineno)
{
    struct processor p;
    char *uuid, *name;
    memset(&p, 0, sizeof p);
    p.type = AMDSMI_PROCESSOR_TYPE_AMD_GPU;
    uuid = next_word(&cursor);
    if (uuid == NULL || !parse_u64(next_word(&cursor), &p.total_mib) ||
        !parse_u64(next_word(&cursor), &p.used_mib) || p.used_mib > p.total_mib ||
        p.total_mib > 0xFFFFFFFFFFFFFFFFULL / MIB) {
        note(path, lineno, "expected: gpu <uuid|-> <total_mib> <used_mib> <name...>");
        return;
    }
    if (strcmp(uuid, "-") == 0)
        p.uuid_fails = 1;
    else if (!copy_field(p.uuid, sizeof p.uuid, uuid)) {
        note(path, lineno, "uuid too long");
        return;
    }
    name = rest_of_line(&cursor);
    if (name != NULL && strcmp(name, "-") != 0 && !copy_field(p.name, sizeof p.name, name)) {
        note(path, lineno, "name too long");
        return;
    }
    add_processor(&p, path, lineno);
}

/* One line that is not blank or a comment, from read_config (stub_config.h). */
static void parse_line(char *line, const char *path, unsigned lineno)
{
    char *cursor = line;
    char *word = next_word(&cursor);

    if (strcmp(word, "driver") == 0) {
        if (!copy_field(driver_version, sizeof driver_version, rest_of_line(&cursor)))
            note(path, lineno, "driver needs a version");
    } else if (strcmp(word, "gpu") == 0) {
        parse_gpu(cursor, path, lineno);
    } else if (strcmp(word, "cpu") == 0) {
        struct processor p;
        memset(&p, 0, sizeof p);
        p.type = AMDSMI_PROCESSOR_TYPE_AMD_CPU;
        add_processor(&p, path, lineno);
    } else if (strcmp(word, "socket") == 0) {
        if (socket_count >= MAX_SOCKETS)
            note(path, lineno, "too many sockets");
        else
            socket_count = socket_count == 0 ? 2 : socket_count + 1;
    } else if (strcmp(word, "proc") == 0) {
        struct proc p;
        if (proc_count >= MAX_PROCS || !parse_u32(next_word(&cursor), &p.gpu) ||
            !parse_u32(next_word(&cursor), &p.pid) ||
            !parse_u64(next_word(&cursor), &p.vram_mib)) {
            note(path, lineno, "expected: proc <gpu_index> <pid> <vram_mib>");
            return;
        }
        procs[proc_count++] = p;
    } else if (strcmp(word, "init_error") == 0) {
        if (!parse_u32(next_word(&cursor), &init_error))
            note(path, lineno, "expected: init_error <code>");
    } else if (strcmp(word, "memory_error") == 0 || strcmp(word, "proc_error") == 0) {
        unsigned int index, code;
        if (!parse_u32(next_word(&cursor), &index) || index >= MAX_PROCESSORS ||
            !parse_u32(next_word(&cursor), &code)) {
            note(path, lineno, "expected: <memory_error|proc_error> <gpu_index> <code>");
            return;
        }
        if (word[0] == 'm')
            memory_errors[index] = code;
        else
            proc_errors[index] = code;
    } else {
        note(path, lineno, "unknown directive");
    }
}

static void reset(void)
{
    memset(processors, 0, sizeof processors);
    memset(procs, 0, sizeof procs);
    memset(memory_errors, 0, sizeof memory_errors);
    memset(proc_errors, 0, sizeof proc_errors);
    processor_count = socket_count = proc_count = 0;
    init_error = AMDSMI_STATUS_SUCCESS;
    strcpy(driver_version, "6.10.5-stub");
}

static amdsmi_status_t load_config(void)
{
    reset();
    return read_config(parse_line) ? init_error : AMDSMI_STATUS_INIT_ERROR;
}

amdsmi_status_t amdsmi_init(uint64_t init_flags)
{
    amdsmi_status_t status;
    if (!(init_flags & AMDSMI_INIT_AMD_GPUS))
        return AMDSMI_STATUS_INVAL; /* canhazgpu asks for GPUs */
    status = load_config();
    initialised = status == AMDSMI_STATUS_SUCCESS;
    return status;
}

#ifndef NO_SHUTDOWN
amdsmi_status_t amdsmi_shut_down(void)
{
    if (!initialised)
        return AMDSMI_STATUS_NOT_INIT;
    initialised = 0;
    return AMDSMI_STATUS_SUCCESS;
}
#endif

amdsmi_status_t amdsmi_status_code_to_string(amdsmi_status_t status, const char **text)
{
    if (text == NULL)
        return AMDSMI_STATUS_INVAL;
    switch (status) {
    case AMDSMI_STATUS_SUCCESS:
        *text = "AMDSMI_STATUS_SUCCESS: Call succeeded";
        break;
    case AMDSMI_STATUS_NO_PERM:
        *text = "AMDSMI_STATUS_NO_PERM: Permission Denied";
        break;
    case AMDSMI_STATUS_DRIVER_NOT_LOADED:
        *text = "AMDSMI_STATUS_DRIVER_NOT_LOADED: Processor driver not loaded";
        break;
    default:
        *text = "AMDSMI_STATUS_UNKNOWN_ERROR: An unknown error occurred";
    }
    return AMDSMI_STATUS_SUCCESS;
}

/* Count-then-fill, as the real library: a NULL array asks for the count. */
static amdsmi_status_t fill(uint32_t *count, void **handles, void **all, uint32_t n)
{
    uint32_t i;
    if (!initialised)
        return AMDSMI_STATUS_NOT_INIT;
    if (count == NULL)
        return AMDSMI_STATUS_INVAL;
    if (handles == NULL) {
        *count = n;
        return AMDSMI_STATUS_SUCCESS;
    }
    if (*count < n)
        return AMDSMI_STATUS_OUT_OF_RESOURCES;
    for (i = 0; i < n; i++)
        handles[i] = all[i];
    *count = n;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_socket_handles(uint32_t *socket_count_out,
                                          amdsmi_socket_handle *socket_handles)
{
    void *all[MAX_SOCKETS];
    uint32_t i;
    for (i = 0; i < socket_count; i++)
        all[i] = &sockets[i];
    return fill(socket_count_out, socket_handles, all, socket_count);
}

amdsmi_status_t amdsmi_get_processor_handles(amdsmi_socket_handle socket_handle,
                                             uint32_t *processor_count_out,
                                             amdsmi_processor_handle *processor_handles)
{
    void *all[MAX_PROCESSORS];
    uint32_t i, n = 0;
    char *socket = socket_handle;
    if (socket < sockets || socket >= sockets + socket_count)
        return AMDSMI_STATUS_INVAL;
    for (i = 0; i < processor_count; i++)
        if (processors[i].socket == (unsigned int)(socket - sockets))
            all[n++] = &processors[i];
    return fill(processor_count_out, processor_handles, all, n);
}

static struct processor *lookup(amdsmi_processor_handle handle)
{
    uint32_t i;
    if (!initialised)
        return NULL;
    for (i = 0; i < processor_count; i++)
        if (handle == &processors[i])
            return &processors[i];
    return NULL;
}

/* The GPU's index among GPUs, for proc lines. */
static unsigned int gpu_index(const struct processor *p)
{
    unsigned int i, n = 0;
    for (i = 0; &processors[i] != p; i++)
        if (processors[i].type == AMDSMI_PROCESSOR_TYPE_AMD_GPU)
            n++;
    return n;
}

#define GPU_OR_FAIL(p, handle)                                                                  \
    struct processor *p = lookup(handle);                                                       \
    if (p == NULL)                                                                              \
        return initialised ? AMDSMI_STATUS_INVAL : AMDSMI_STATUS_NOT_INIT;                      \
    if (p->type != AMDSMI_PROCESSOR_TYPE_AMD_GPU)                                               \
        return AMDSMI_STATUS_NOT_SUPPORTED;

amdsmi_status_t amdsmi_get_processor_type(amdsmi_processor_handle handle,
                                          processor_type_t *processor_type)
{
    struct processor *p = lookup(handle);
    if (p == NULL || processor_type == NULL)
        return initialised ? AMDSMI_STATUS_INVAL : AMDSMI_STATUS_NOT_INIT;
    *processor_type = p->type;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_asic_info(amdsmi_processor_handle handle,
                                         amdsmi_asic_info_t *info)
{
    GPU_OR_FAIL(p, handle)
    if (info == NULL)
        return AMDSMI_STATUS_INVAL;
    memset(info, 0, sizeof *info);
    strcpy(info->market_name, p->name);
    info->vendor_id = 0x1002;
    strcpy(info->vendor_name, "Advanced Micro Devices Inc. [AMD/ATI]");
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_driver_info(amdsmi_processor_handle handle,
                                           amdsmi_driver_info_t *info)
{
    GPU_OR_FAIL(p, handle)
    (void)p;
    if (info == NULL)
        return AMDSMI_STATUS_INVAL;
    memset(info, 0, sizeof *info);
    strcpy(info->driver_version, driver_version);
    strcpy(info->driver_name, "amdgpu");
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_device_uuid(amdsmi_processor_handle handle,
                                           unsigned int *uuid_length, char *uuid)
{
    GPU_OR_FAIL(p, handle)
    if (uuid_length == NULL || uuid == NULL || *uuid_length < AMDSMI_GPU_UUID_SIZE)
        return AMDSMI_STATUS_INVAL;
    if (p->uuid_fails)
        return AMDSMI_STATUS_NOT_SUPPORTED;
    if (strlen(p->uuid) >= *uuid_length)
        return AMDSMI_STATUS_INVAL;
    strcpy(uuid, p->uuid);
    return AMDSMI_STATUS_SUCCESS;
}

static amdsmi_status_t memory(amdsmi_processor_handle handle, uint32_t mem_type,
                              uint64_t *out, int total)
{
    GPU_OR_FAIL(p, handle)
    if (out == NULL)
        return AMDSMI_STATUS_INVAL;
    if (mem_type != AMDSMI_MEM_TYPE_VRAM)
        return AMDSMI_STATUS_NOT_SUPPORTED; /* canhazgpu asks for VRAM */
    if (memory_errors[gpu_index(p)] != AMDSMI_STATUS_SUCCESS)
        return memory_errors[gpu_index(p)];
    *out = (total ? p->total_mib : p->used_mib) * MIB;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_memory_total(amdsmi_processor_handle handle, uint32_t mem_type,
                                            uint64_t *total)
{
    return memory(handle, mem_type, total, 1);
}

amdsmi_status_t amdsmi_get_gpu_memory_usage(amdsmi_processor_handle handle, uint32_t mem_type,
                                            uint64_t *used)
{
    return memory(handle, mem_type, used, 0);
}

static void describe(const struct proc *q, amdsmi_proc_info_t *info)
{
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "job%u", q->pid % 1000);
    info->pid = q->pid;
    info->memory_usage.vram_mem = q->vram_mib * MIB;
    info->mem = info->memory_usage.vram_mem;
}

#ifndef PROCESS_PIDS
/* ROCm 6.1 and later: records; *max_processes == 0 asks for the count. */
amdsmi_status_t amdsmi_get_gpu_process_list(amdsmi_processor_handle handle,
                                            uint32_t *max_processes, amdsmi_proc_info_t *list)
{
    unsigned int index, i, n = 0, room;
    GPU_OR_FAIL(p, handle)
    if (max_processes == NULL)
        return AMDSMI_STATUS_INVAL;
    index = gpu_index(p);
    if (proc_errors[index] != AMDSMI_STATUS_SUCCESS)
        return proc_errors[index];
    for (i = 0; i < proc_count; i++)
        if (procs[i].gpu == index)
            n++;
    if (*max_processes == 0 || n == 0) {
        *max_processes = n;
        return AMDSMI_STATUS_SUCCESS;
    }
    if (list == NULL)
        return AMDSMI_STATUS_INVAL;
    room = *max_processes;
    n = 0;
    for (i = 0; i < proc_count; i++) {
        if (procs[i].gpu != index)
            continue;
        if (n < room)
            describe(&procs[i], &list[n]);
        n++;
    }
    *max_processes = n;
    return room >= n ? AMDSMI_STATUS_SUCCESS : AMDSMI_STATUS_OUT_OF_RESOURCES;
}
#else
/* Before ROCm 6.1: the pids, then each asked for its record. */
amdsmi_status_t amdsmi_get_gpu_process_list(amdsmi_processor_handle handle,
                                            uint32_t *max_processes,
                                            amdsmi_process_handle_t *list)
{
    unsigned int index, i, n = 0;
    GPU_OR_FAIL(p, handle)
    if (max_processes == NULL)
        return AMDSMI_STATUS_INVAL;
    index = gpu_index(p);
    if (proc_errors[index] != AMDSMI_STATUS_SUCCESS)
        return proc_errors[index];
    for (i = 0; i < proc_count; i++) {
        if (procs[i].gpu != index)
            continue;
        if (list != NULL && n < *max_processes)
            list[n] = procs[i].pid;
        n++;
    }
    *max_processes = n;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_process_info(amdsmi_processor_handle handle,
                                            amdsmi_process_handle_t process,
                                            amdsmi_proc_info_t *info)
{
    unsigned int index, i;
    GPU_OR_FAIL(p, handle)
    if (info == NULL)
        return AMDSMI_STATUS_INVAL;
    index = gpu_index(p);
    for (i = 0; i < proc_count; i++) {
        if (procs[i].gpu == index && procs[i].pid == process) {
            describe(&procs[i], info);
            return AMDSMI_STATUS_SUCCESS;
        }
    }
    return AMDSMI_STATUS_INVAL;
}
#endif
