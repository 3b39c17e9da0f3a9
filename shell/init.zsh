# canhazgpu shell integration for zsh. Load it from ~/.zshrc with
#     eval "$(canhazgpu init zsh)"
# (after compinit if you want completions without installing _canhazgpu in $fpath).
#
# `canhazgpu reserve` and `canhazgpu release` then change this shell's environment: the
# function below runs the binary with this shell's PID and evaluates the shell code it
# prints on stdout (messages go to stderr). The reservation ends when this shell exits.
# A precmd hook drops the variables when the reservation ends behind the shell's back,
# and `canhazgpu_prompt` prints a segment for PROMPT/RPROMPT. Everything else passes
# straight through to the binary. Names starting with _canhazgpu are internal.

# EPOCHSECONDS for the hook's expiry check and sysparams[pid] for the subshell check,
# both without running anything.
zmodload zsh/datetime 2>/dev/null
zmodload -F zsh/system p:sysparams 2>/dev/null

# Every variable a reservation sets and a release restores (the binary's list).
typeset -ga _canhazgpu_vars=(
  CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES CUDA_DEVICE_ORDER
  HIP_VISIBLE_DEVICES ROCR_VISIBLE_DEVICES
  CANHAZGPU_GPUS CANHAZGPU_DEVICES CANHAZGPU_EXPIRES CANHAZGPU_OWNER_PID CANHAZGPU_LEASE
  CANHAZGPU_SHELL_STORE CANHAZGPU_RESTORE
)

function canhazgpu {
  emulate -L zsh
  local arg sub= skip=
  local -i st=0
  # The subcommand is the first word that is not an option or an option's value.
  for arg in "$@"; do
    if [[ -n $skip ]]; then
      skip=
      continue
    fi
    case $arg in
      (--store|--config) skip=1 ;;
      (-*) ;;
      (*) sub=$arg; break ;;
    esac
  done
  if [[ $sub != (reserve|release) ]] || (( ${argv[(I)(-h|--help)]} )); then
    command canhazgpu "$@"
    return
  fi
  if (( ${+sysparams} )) && [[ ${sysparams[pid]} != $$ ]]; then
    # A subshell's exports die with it, and its $$ is still the parent's. Only
    # `eval "$(canhazgpu reserve)"` can work: the binary checks that its output goes
    # back to this shell, and prints the code for it instead of evaluating it here.
    (_canhazgpu_exec "$@" --shell zsh --owner-pid $$ --subshell) || st=$?
  else
    _canhazgpu_eval "$@" --shell zsh --owner-pid $$ || st=$?
  fi
  (( st != 127 )) || _canhazgpu_not_found
  return st
}

# Runs the binary and evaluates what it printed, only if it succeeded.
function _canhazgpu_eval {
  emulate -L zsh
  local code
  local -i st=0
  code=$(_canhazgpu_exec "$@") || st=$?
  if (( st == 0 )) && [[ -n $code ]]; then
    eval "$code"
  fi
  return st
}

# In a subshell: describes this shell's variables to the binary and runs it; status
# 127, and not a word, when there is no binary (the callers say it, once).
function _canhazgpu_exec {
  emulate -L zsh
  if [[ ! -x ${commands[canhazgpu]-} ]]; then
    unhash canhazgpu 2>/dev/null
    [[ -x ${commands[canhazgpu]-} ]] || return 127
  fi
  _canhazgpu_describe
  command canhazgpu "$@"
}

# Tells the binary, in the environment of this subshell only, how the shell keeps each
# variable it manages: exported or not, and the attributes an assignment would trip
# over (typeset -r, integer...). Unexported values are exported here, so that the
# binary can save them and give them back unexported.
function _canhazgpu_describe {
  emulate -L zsh
  local name kind all=
  for name in $_canhazgpu_vars; do
    kind=${(tP)name}
    if [[ -n $kind && $kind != *-export* ]]; then
      export $name 2>/dev/null
    fi
    all+="$name=$kind "
  done
  export _CANHAZGPU_ATTRS=$all
}

function _canhazgpu_not_found {
  print -ru2 -- "canhazgpu: the canhazgpu binary is not on PATH, so this shell's GPU variables" \
    "(CANHAZGPU_GPUS=${CANHAZGPU_GPUS-}) cannot be reserved, released or kept in step" \
    "with the store; put it back on PATH (PATH=$PATH)"
}

# Before each prompt. Forks nothing unless the reservation may have ended: its expiry
# passed, its marker file was deleted by a release elsewhere, or the time the binary
# set for a look anyway (a few minutes) came.
function _canhazgpu_hook {
  local -i st=$? synced=0
  emulate -L zsh
  if [[ -n ${CANHAZGPU_OWNER_PID-} ]]; then
    local -i now=${EPOCHSECONDS:-0}
    if [[ ${_canhazgpu_check-} != <-> || ${#_canhazgpu_check} -gt 18 ]]; then
      typeset -g _canhazgpu_check=0
    fi
    if [[ ${CANHAZGPU_EXPIRES-} != <-> || ${#CANHAZGPU_EXPIRES} -gt 18 ]] ||
       (( now >= 10#${CANHAZGPU_EXPIRES} || now >= 10#${_canhazgpu_check} )) ||
       [[ -n ${CANHAZGPU_LEASE-} && ! -e ${CANHAZGPU_LEASE} ]]; then
      # Until the binary says when next (it cannot when it fails): in a minute.
      typeset -g _canhazgpu_check=$(( now + 60 ))
      _canhazgpu_eval release --sync --shell zsh --owner-pid $$ || synced=$?
      if (( synced != 127 )); then
        typeset -g _canhazgpu_missing=
      elif [[ -z ${_canhazgpu_missing-} ]]; then
        typeset -g _canhazgpu_missing=1
        _canhazgpu_not_found
      fi
    fi
  fi
  return st
}

# On exit: release what this shell holds. A killed shell runs no hook; the next
# canhazgpu command by anyone sees that the shell is gone and frees the GPUs.
function _canhazgpu_exit {
  local -i st=$?
  emulate -L zsh
  if [[ ${CANHAZGPU_OWNER_PID-} == $$ && -x ${commands[canhazgpu]-} ]]; then
    command canhazgpu release --owner-pid $$
  fi
  return st
}

# Prints e.g. `gpu:1,5 3h59m` when this shell holds GPUs, nothing otherwise. Reads only
# variables (it works with PATH empty). CANHAZGPU_PROMPT_FORMAT overrides the format;
# {gpus}, {count} and {left} are replaced.
function canhazgpu_prompt {
  local -i st=$?
  emulate -L zsh
  setopt extended_glob
  local gpus=${CANHAZGPU_GPUS-} left='?' out commas
  local -i secs
  if [[ $gpus != <->(,<->)# ]]; then
    return st
  fi
  if [[ ${CANHAZGPU_EXPIRES-} == <-> && ${#CANHAZGPU_EXPIRES} -le 18 ]] && (( ${+EPOCHSECONDS} )); then
    secs=$(( 10#$CANHAZGPU_EXPIRES - EPOCHSECONDS ))
    if (( secs >= 3600 )); then
      left="$(( secs / 3600 ))h$(( secs % 3600 / 60 ))m"
    elif (( secs >= 60 )); then
      left="$(( secs / 60 ))m"
    elif (( secs > 0 )); then
      left="${secs}s"
    else
      left=expired
    fi
  fi
  out=${CANHAZGPU_PROMPT_FORMAT-}
  [[ -n $out ]] || out='gpu:{gpus} {left}'
  commas=${gpus//[^,]/}
  out=${out//'{gpus}'/$gpus}
  out=${out//'{count}'/$(( ${#commas} + 1 ))}
  out=${out//'{left}'/$left}
  print -rn -- "$out"
  return st
}

# Hook arrays rather than precmd/zshexit themselves, so that other hooks stay; each is
# added once however often init is evaluated. The prompt hook goes first, so that
# prompt builders hooked on precmd (add-zsh-hook) already see the variables as they are
# now; a `precmd` function itself runs before every array entry.
typeset -ga precmd_functions zshexit_functions
if (( ! ${precmd_functions[(Ie)_canhazgpu_hook]} )); then
  precmd_functions=(_canhazgpu_hook $precmd_functions)
fi
(( ${zshexit_functions[(Ie)_canhazgpu_exit]} )) || zshexit_functions+=(_canhazgpu_exit)

# Variables inherited from a shell that is not an ancestor of this one (a tmux server
# started from a shell that held GPUs passes them to every pane) describe GPUs this
# shell does not hold. Only then is the binary asked, once, at startup.
if [[ -n ${CANHAZGPU_OWNER_PID-} && ${CANHAZGPU_OWNER_PID-} != $$ ]]; then
  _canhazgpu_eval release --inherited --shell zsh --owner-pid $$ || :
fi

# Completion: the function has the binary's name, so a _canhazgpu in $fpath completes
# it. compdef exists only after compinit, and calling it earlier is an error: register
# only then, and only if nothing else did, loading the generated completion on first use.
function _canhazgpu_complete {
  local code
  code=$(command canhazgpu completions zsh 2>/dev/null) || return 1
  eval "$code"
  (( ${+functions[_canhazgpu]} )) && _canhazgpu "$@"
}
if (( ${+functions[compdef]} )) && [[ -z ${_comps[canhazgpu]-} ]]; then
  compdef _canhazgpu_complete canhazgpu
fi
