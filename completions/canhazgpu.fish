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

complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -s V -l version -d 'Print version'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "admin" -d 'Initialize GPU pool for this machine'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "release" -d 'Release all manually reserved GPUs held by the current user'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "reserve" -d 'Reserve GPUs manually for a specified duration'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "run" -d 'Reserve GPUs and run a command with CUDA_VISIBLE_DEVICES set'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "status" -d 'Show current GPU allocation status'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "init" -d 'Print the shell integration for bash, zsh or fish'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "prompt" -d 'Print what this shell holds, for a prompt (reads the store, never the GPUs)'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c canhazgpu -n "__fish_canhazgpu_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l gpus -d 'Number of GPUs in the pool (IDs 0 to N-1)' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -l force -d 'Reinitialize an existing pool, dropping every reservation'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand admin" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -l all -d 'Release every manual reservation you hold, not only this shell\'s'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand release" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l gpus -d 'Number of GPUs to reserve' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l duration -d 'How long to hold them' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand reserve" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l gpus -d 'Number of GPUs to reserve' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l heartbeat-interval -d 'Seconds between heartbeats while the command runs [default: 60s, or the config]' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand run" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -s v -l verbose -d 'Also say which store was read'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand status" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand init" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand init" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand init" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand prompt" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand prompt" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand prompt" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand completions" -l store -d 'Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu), redis://host:port/db or redis+unix:///path/to/redis.sock' -r
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand completions" -l config -d 'Configuration file [default: /etc/canhazgpu/config.toml]' -r -F
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand completions" -s h -l help -d 'Print help'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "admin" -d 'Initialize GPU pool for this machine'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "release" -d 'Release all manually reserved GPUs held by the current user'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "reserve" -d 'Reserve GPUs manually for a specified duration'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "run" -d 'Reserve GPUs and run a command with CUDA_VISIBLE_DEVICES set'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "status" -d 'Show current GPU allocation status'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "init" -d 'Print the shell integration for bash, zsh or fish'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "prompt" -d 'Print what this shell holds, for a prompt (reads the store, never the GPUs)'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "completions" -d 'Print shell completions'
complete -c canhazgpu -n "__fish_canhazgpu_using_subcommand help; and not __fish_seen_subcommand_from admin release reserve run status init prompt completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
