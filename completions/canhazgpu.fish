# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_canhazgpu_global_optspecs
    string join \n store= config= h/help V/version
end

function __fish_canhazgpu_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_canhazgpu_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_canhazgpu_using_subcommand
    set -l cmd (__fish_canhazgpu_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -s V -l version -d 'Print version'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "admin" -d 'Initialize GPU pool for this machine'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "release" -d 'Release all manually reserved GPUs held by the current user'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "reserve" -d 'Reserve GPUs manually for a specified duration'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "run" -d 'Reserve GPUs and run a command with CUDA_VISIBLE_DEVICES set'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "status" -d 'Show current GPU allocation status'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "queue" -d 'List the requests waiting for GPUs (--wait), in the order they will be served'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "report" -d 'GPU-hours per user over a period'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "web" -d 'Serve a live, read-only web dashboard of the GPUs, the queue and the usage report'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "init" -d 'Print the shell integration for bash, zsh or fish'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "prompt" -d 'Print what this shell holds, for a prompt (reads the store, never the GPUs)'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -s g -l gpus -d 'Number of GPUs in the pool (IDs 0 to N-1) [default: the number NVML or AMD SMI reports, MIG instances counted with mig = true]' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l nvml-library -d 'NVML library to load: the file, or a directory holding libnvidia-ml.so.1 [default: the config\'s nvml_library, else the dynamic loader\'s search path]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l amd-smi-library -d 'AMD SMI library to load: the file, or a directory holding libamd_smi.so [default: the config\'s amd_smi_library, else the dynamic loader\'s search path, else $ROCM_PATH/lib and /opt/rocm/lib]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l force -d 'Reinitialize an existing pool, dropping every reservation'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l take-over-host -d 'Make this machine the owner of its host name (config `host`) in the shared Redis, when another machine registered it (a replaced or renamed server). The pool and its reservations stay; with --gpus, the pool is (re)initialized too'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -s G -l gpu-ids -d 'Release exactly these GPUs, which must be yours; `run` reservations too (for a job whose wrapper died while its command lives on)' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -l all -d 'Release every manual reservation you hold, not only this shell\'s'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -l force -d 'With --gpu-ids: also GPUs that others hold, a `run`\'s too (admins only: root, the config\'s `admins`, or the owner of the store\'s directory). The holder\'s shell says so at its next prompt, and the history records the end'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -s g -l gpus -d 'Number of GPUs to reserve' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -s d -l duration -d 'How long to hold them (at least 1s) [default: 8h, or the config\'s default_duration]' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -s G -l gpu-ids -d 'Exactly these GPUs, all or nothing (instead of --gpus)' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -s w -l wait -d 'Wait in the queue when the GPUs are busy, for at most TIMEOUT if given (--wait=2h or -w=2h, with the \'=\'); first come, first served' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -s n -l note -d 'A note shown in status (what this is for)' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -s u -l user -d 'Show the reservation as held by NAME (shared accounts); your own account is recorded too and can always release it' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l policy -d 'How free GPUs are ranked [default: lru, or the config\'s allocation_policy]' -r -f -a "lru\t'Least recently released first, so that wear and heat spread over all GPUs'
sticky\t'The GPUs the requesting user released most recently first, then LRU: the same card again for benchmarks and warm caches'"
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l nvml-library -d 'NVML library to load: the file, or a directory holding libnvidia-ml.so.1 [default: the config\'s nvml_library, else the dynamic loader\'s search path]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l amd-smi-library -d 'AMD SMI library to load: the file, or a directory holding libamd_smi.so [default: the config\'s amd_smi_library, else the dynamic loader\'s search path, else $ROCM_PATH/lib and /opt/rocm/lib]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l memory-threshold -d 'A GPU without reservation with more than this many MiB of memory in use is "in use without reservation" [default: 1024, or the config\'s memory_threshold]' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l visible-devices -d 'What CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES list on NVIDIA GPUs: GPU indices (in PCI order, as nvidia-smi numbers them) or GPU UUIDs (needs NVML); MIG instances always go by UUID, AMD GPUs by index [default: index, or the config\'s visible_devices]' -r -f -a "index\t''
uuid\t''"
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l force -d 'Also hand out GPUs that are in use without a reservation'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -s g -l gpus -d 'Number of GPUs to reserve' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l heartbeat-interval -d 'Time between heartbeats while the command runs (at least 1s) [default: 60s, or the config]' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -s G -l gpu-ids -d 'Exactly these GPUs, all or nothing (instead of --gpus)' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -s w -l wait -d 'Wait in the queue when the GPUs are busy, for at most TIMEOUT if given (--wait=2h or -w=2h, with the \'=\'); first come, first served' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -s n -l note -d 'A note shown in status (what this is for)' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -s u -l user -d 'Show the reservation as held by NAME (shared accounts); your own account is recorded too and can always release it' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l policy -d 'How free GPUs are ranked [default: lru, or the config\'s allocation_policy]' -r -f -a "lru\t'Least recently released first, so that wear and heat spread over all GPUs'
sticky\t'The GPUs the requesting user released most recently first, then LRU: the same card again for benchmarks and warm caches'"
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -s t -l timeout -d 'Stop the command after DURATION: SIGINT first, SIGKILL after --timeout-grace' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l timeout-grace -d 'How long the command may take to exit after the --timeout SIGINT' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l on-lost -d 'What to do when someone else took this run\'s GPUs while it ran (after a store reset, say): warn, or also send the command SIGTERM' -r -f -a "warn\t'Warn on stderr at every heartbeat and let the command run on'
kill\t'Warn and send the command SIGTERM once'"
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l nvml-library -d 'NVML library to load: the file, or a directory holding libnvidia-ml.so.1 [default: the config\'s nvml_library, else the dynamic loader\'s search path]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l amd-smi-library -d 'AMD SMI library to load: the file, or a directory holding libamd_smi.so [default: the config\'s amd_smi_library, else the dynamic loader\'s search path, else $ROCM_PATH/lib and /opt/rocm/lib]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l memory-threshold -d 'A GPU without reservation with more than this many MiB of memory in use is "in use without reservation" [default: 1024, or the config\'s memory_threshold]' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l visible-devices -d 'What CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES list on NVIDIA GPUs: GPU indices (in PCI order, as nvidia-smi numbers them) or GPU UUIDs (needs NVML); MIG instances always go by UUID, AMD GPUs by index [default: index, or the config\'s visible_devices]' -r -f -a "index\t''
uuid\t''"
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l force -d 'Also hand out GPUs that are in use without a reservation'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l host -d 'Show the pool of host NAME (repeatable): this host, a host registered in the same Redis, or one named in the config\'s [hosts]. Reads only; never changes that pool' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l free -d 'With --all-hosts or --host: only the hosts where a request for N GPUs would be served now (free, not in use without reservation, not wanted by the queue), the most free first' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l nvml-library -d 'NVML library to load: the file, or a directory holding libnvidia-ml.so.1 [default: the config\'s nvml_library, else the dynamic loader\'s search path]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l amd-smi-library -d 'AMD SMI library to load: the file, or a directory holding libamd_smi.so [default: the config\'s amd_smi_library, else the dynamic loader\'s search path, else $ROCM_PATH/lib and /opt/rocm/lib]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l memory-threshold -d 'A GPU without reservation with more than this many MiB of memory in use is "in use without reservation" [default: 1024, or the config\'s memory_threshold]' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -s v -l verbose -d 'Also say which store was read and what the GPU library (NVML, AMD SMI) reported'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l json -d 'Print a JSON array, one object per GPU (schema: docs/status-json.md); with --host or --all-hosts, one object per host (docs/status-json.md)'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l all-hosts -d 'Show every host: this one, every host registered in the same Redis, and every host in the config\'s [hosts], each under its name. Reads only'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand queue" -l host -d 'Show the pool of host NAME (repeatable): this host, a host registered in the same Redis, or one named in the config\'s [hosts]. Reads only; never changes that pool' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand queue" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand queue" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand queue" -l json -d 'Print a JSON array (position, user, actual_user, gpus, gpu_ids, kind, since, deadline); with --host or --all-hosts, one object per host (docs/status-json.md)'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand queue" -l all-hosts -d 'Show every host: this one, every host registered in the same Redis, and every host in the config\'s [hosts], each under its name. Reads only'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand queue" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand report" -l days -d 'How many days back to count' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand report" -l host -d 'Show the pool of host NAME (repeatable): this host, a host registered in the same Redis, or one named in the config\'s [hosts]. Reads only; never changes that pool' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand report" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand report" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand report" -l json -d 'Print JSON instead of a table; with --host or --all-hosts, an array of one object per host (docs/status-json.md)'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand report" -l all-hosts -d 'Show every host: this one, every host registered in the same Redis, and every host in the config\'s [hosts], each under its name. Reads only'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand report" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand web" -l listen -d 'Address and port to listen on. Any address but a loopback one makes the page readable by everyone who can reach it (there is no login)' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand web" -l nvml-library -d 'NVML library to load: the file, or a directory holding libnvidia-ml.so.1 [default: the config\'s nvml_library, else the dynamic loader\'s search path]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand web" -l amd-smi-library -d 'AMD SMI library to load: the file, or a directory holding libamd_smi.so [default: the config\'s amd_smi_library, else the dynamic loader\'s search path, else $ROCM_PATH/lib and /opt/rocm/lib]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand web" -l memory-threshold -d 'A GPU without reservation with more than this many MiB of memory in use is "in use without reservation" [default: 1024, or the config\'s memory_threshold]' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand web" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand web" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand web" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand init" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand init" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand init" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand prompt" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand prompt" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand prompt" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand completions" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand completions" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand completions" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "admin" -d 'Initialize GPU pool for this machine'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "release" -d 'Release all manually reserved GPUs held by the current user'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "reserve" -d 'Reserve GPUs manually for a specified duration'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "run" -d 'Reserve GPUs and run a command with CUDA_VISIBLE_DEVICES set'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "status" -d 'Show current GPU allocation status'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "queue" -d 'List the requests waiting for GPUs (--wait), in the order they will be served'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "report" -d 'GPU-hours per user over a period'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "web" -d 'Serve a live, read-only web dashboard of the GPUs, the queue and the usage report'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "init" -d 'Print the shell integration for bash, zsh or fish'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "prompt" -d 'Print what this shell holds, for a prompt (reads the store, never the GPUs)'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "completions" -d 'Print shell completions'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status queue report web init prompt completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
