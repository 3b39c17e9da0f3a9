# canhazgpu shell integration for fish (3.1 or newer). Load it from
# ~/.config/fish/config.fish with
#     canhazgpu init fish | source
#
# `canhazgpu reserve` and `canhazgpu release` then change this shell's environment: the
# function below runs the binary with this shell's PID and evaluates the shell code it
# prints on stdout (messages go to stderr). The reservation ends when this shell exits.
# A prompt hook drops the variables when the reservation ends behind the shell's back,
# and `canhazgpu_prompt` prints a segment for fish_prompt/fish_right_prompt. Everything
# else passes straight through to the binary. Names starting with _canhazgpu are internal.
#
# fish has no subshells: functions run in the shell process even in pipelines and
# command substitutions, so reserve works (and exports) wherever it is called.
#
# fish cannot read the time without running a program, so the expiry check compares
# seconds since boot (/proc/uptime, read by a builtin) with _canhazgpu_deadline, which
# the binary sets alongside CANHAZGPU_EXPIRES.

function canhazgpu --description 'Exclusive GPU reservations (shell integration)'
    set -l sub
    set -l skip 0
    # The subcommand is the first word that is not an option or an option's value.
    for arg in $argv
        if test $skip = 1
            set skip 0
            continue
        end
        switch $arg
            case --store --config
                set skip 1
            case '-*'
            case '*'
                set sub $arg
                break
        end
    end
    if not contains -- "$sub" reserve release; or contains -- -h $argv; or contains -- --help $argv
        command canhazgpu $argv
        return $status
    end
    _canhazgpu_eval $argv --shell fish --owner-pid $fish_pid
end

# Runs the binary and evaluates what it printed, only if it succeeded. The binary keeps
# every statement on one line, so joining the lines back is exact.
function _canhazgpu_eval
    set -l code (command canhazgpu $argv)
    set -l st $status
    if test $st -eq 0; and test (count $code) -gt 0
        string join \n -- $code | source
    end
    return $st
end

# Seconds since boot, or nothing.
function _canhazgpu_uptime
    read -l up _rest </proc/uptime 2>/dev/null; or return 1
    string replace -r '\..*' '' -- $up
end

# Before each prompt. Runs nothing unless the reservation may have ended: its expiry
# passed, or its marker file was deleted by a release elsewhere.
function _canhazgpu_hook --on-event fish_prompt
    set -q CANHAZGPU_OWNER_PID; or return
    set -l due 1
    set -l up (_canhazgpu_uptime)
    if string match -qr '^[0-9]{1,18}$' -- "$_canhazgpu_deadline"; and string match -qr '^[0-9]+$' -- "$up"
        if test "$up" -lt "$_canhazgpu_deadline"
            set due 0
        end
    end
    if test -n "$CANHAZGPU_LEASE"; and not test -e "$CANHAZGPU_LEASE"
        set due 1
    end
    if test $due = 1
        _canhazgpu_eval release --sync --shell fish --owner-pid $fish_pid
    end
end

# On exit: release what this shell holds. A killed shell runs no handler; the next
# canhazgpu command by anyone sees that the shell is gone and frees the GPUs.
function _canhazgpu_exit --on-event fish_exit
    if test "$CANHAZGPU_OWNER_PID" = "$fish_pid"
        command canhazgpu release --owner-pid $fish_pid
    end
end

# Prints e.g. `gpu:1,5 3h59m` when this shell holds GPUs, nothing otherwise. Reads only
# variables and /proc/uptime (it works with PATH empty). CANHAZGPU_PROMPT_FORMAT
# overrides the format; {gpus}, {count} and {left} are replaced.
function canhazgpu_prompt --description 'Prompt segment for the GPUs this shell holds'
    set -l st $status
    set -q CANHAZGPU_GPUS; or return $st
    if not string match -qr '^[0-9]+(,[0-9]+)*$' -- "$CANHAZGPU_GPUS"
        return $st
    end
    set -l left '?'
    set -l up (_canhazgpu_uptime)
    if string match -qr '^[0-9]{1,18}$' -- "$_canhazgpu_deadline"; and string match -qr '^[0-9]+$' -- "$up"
        set -l secs (math "$_canhazgpu_deadline - $up")
        if test $secs -ge 3600
            set left (math -s0 "$secs / 3600")h(math -s0 "$secs % 3600 / 60")m
        else if test $secs -ge 60
            set left (math -s0 "$secs / 60")m
        else if test $secs -gt 0
            set left {$secs}s
        else
            set left expired
        end
    end
    set -l out "$CANHAZGPU_PROMPT_FORMAT"
    test -n "$out"; or set out 'gpu:{gpus} {left}'
    set -l count (count (string split , -- $CANHAZGPU_GPUS))
    set out (string replace -a '{gpus}' $CANHAZGPU_GPUS -- $out)
    set out (string replace -a '{count}' $count -- $out)
    set out (string replace -a '{left}' $left -- $out)
    printf '%s' $out
    return $st
end

# Variables inherited from a shell that is not an ancestor of this one (a tmux server
# started from a shell that held GPUs passes them to every pane) describe GPUs this
# shell does not hold; kept ones get their deadline. Only then is the binary asked,
# once, at startup.
if set -q CANHAZGPU_OWNER_PID; and test "$CANHAZGPU_OWNER_PID" != "$fish_pid"
    _canhazgpu_eval release --inherited --shell fish --owner-pid $fish_pid
end

# Completion needs nothing here: fish loads completions by command name, for the
# function as for the binary (install them with
# `canhazgpu completions fish > ~/.config/fish/completions/canhazgpu.fish`).
