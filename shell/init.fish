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
# the time since boot (/proc/uptime, read by a builtin, in hundredths of a second) with
# _canhazgpu_deadline_cs, which the binary sets alongside CANHAZGPU_EXPIRES.

# Every variable a reservation sets and a release restores (the binary's list).
set -g _canhazgpu_vars \
    CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES CUDA_DEVICE_ORDER \
    HIP_VISIBLE_DEVICES ROCR_VISIBLE_DEVICES \
    CANHAZGPU_GPUS CANHAZGPU_DEVICES CANHAZGPU_EXPIRES CANHAZGPU_OWNER_PID CANHAZGPU_LEASE \
    CANHAZGPU_SHELL_STORE CANHAZGPU_RESTORE

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
        # Through eval, so that `jobs` shows a suspended `canhazgpu run` as the command
        # it is rather than as this function's text.
        eval command canhazgpu (string escape -- $argv)
        return $status
    end
    _canhazgpu_eval $argv --shell fish --owner-pid $fish_pid
    set -l st $status
    test $st -eq 127; and _canhazgpu_not_found
    return $st
end

# Runs the binary and evaluates what it printed, only if it succeeded; status 127, and
# not a word, when there is no binary (the callers say it, once). The binary keeps every
# statement on one line, so joining the lines back is exact.
function _canhazgpu_eval
    command -q canhazgpu; or return 127
    # How the shell keeps each variable, and the values of unexported ones, go to the
    # binary's environment only.
    set -l pass _CANHAZGPU_ATTRS=(_canhazgpu_describe)
    for name in $_canhazgpu_vars
        if set -q $name; and not set -qx $name
            set -l value (string join ' ' -- $$name)
            set -a pass "$name=$value"
        end
    end
    set -l code (command env $pass canhazgpu $argv)
    set -l st $status
    if test $st -eq 0; and test (count $code) -gt 0
        string join \n -- $code | source
    end
    return $st
end

# `NAME=LETTERS` for each managed variable: x exported, U only universal (`set -U`,
# which the global the integration sets shadows), a a list of several elements.
function _canhazgpu_describe
    set -l all
    for name in $_canhazgpu_vars
        set -l letters
        if set -q $name
            set -qx $name; and set -a letters x
            if set -qU $name; and not set -qg $name
                set -a letters U
            end
            test (count $$name) -gt 1; and set -a letters a
        end
        set -a all $name=(string join '' -- $letters '')
    end
    string join ' ' -- $all
end

function _canhazgpu_not_found
    printf '%s %s %s\n' \
        "canhazgpu: the canhazgpu binary is not on PATH, so this shell's GPU variables" \
        "(CANHAZGPU_GPUS=$CANHAZGPU_GPUS) cannot be reserved, released or kept in step" \
        "with the store; put it back on PATH (PATH=$PATH)" >&2
end

# Hundredths of a second since boot (/proc/uptime has two decimals), or nothing.
function _canhazgpu_uptime
    read -l up _rest </proc/uptime 2>/dev/null; or return 1
    string replace -r '^([0-9]+)\.([0-9]{2}).*$' '$1$2' -- $up
end

# Before each prompt, and after each command (which comes before every fish_prompt
# handler, so prompt builders hooked there see the variables as they are now). Runs
# nothing unless the reservation may have ended: its expiry passed, its marker file
# was deleted by a release elsewhere, or the time the binary set for a look anyway (a
# few minutes) came.
function _canhazgpu_hook --on-event fish_prompt --on-event fish_postexec
    set -q CANHAZGPU_OWNER_PID; or return
    set -l due 1
    set -l up (_canhazgpu_uptime)
    if string match -qr '^[0-9]{1,18}$' -- "$up"
        set due 0
        for at in "$_canhazgpu_deadline_cs" "$_canhazgpu_check"
            if not string match -qr '^[0-9]{1,18}$' -- "$at"; or test "$up" -ge "$at"
                set due 1
            end
        end
    end
    if test -n "$CANHAZGPU_LEASE"; and not test -e "$CANHAZGPU_LEASE"
        set due 1
    end
    test $due = 1; or return
    # Until the binary says when next (it cannot when it fails): in a minute.
    string match -qr '^[0-9]{1,18}$' -- "$up"; and set -g _canhazgpu_check (math $up + 6000)
    _canhazgpu_eval release --sync --shell fish --owner-pid $fish_pid
    if test $status -ne 127
        set -e -g _canhazgpu_missing
    else if not set -q _canhazgpu_missing
        set -g _canhazgpu_missing 1
        _canhazgpu_not_found
    end
end

# On exit: release what this shell holds. A killed shell runs no handler; the next
# canhazgpu command by anyone sees that the shell is gone and frees the GPUs.
function _canhazgpu_exit --on-event fish_exit
    if test "$CANHAZGPU_OWNER_PID" = "$fish_pid"; and command -q canhazgpu
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
    if string match -qr '^[0-9]{1,18}$' -- "$_canhazgpu_deadline_cs"; and string match -qr '^[0-9]+$' -- "$up"
        # Whole seconds left, rounded up as the other shells count them.
        set -l secs (math "ceil(($_canhazgpu_deadline_cs - $up) / 100)")
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
