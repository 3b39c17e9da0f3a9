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

function canhazgpu {
  emulate -L zsh
  local arg sub= skip=
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
  # A subshell's exports die with it, and its $$ is still the parent's: refuse rather
  # than bind GPUs to a shell whose environment never sees them.
  if (( ${+sysparams} )) && [[ ${sysparams[pid]} != $$ ]]; then
    print -ru2 -- "canhazgpu: $sub in a subshell ( ), a pipeline or \$( ) cannot change this shell's environment; run it as a command of its own"
    return 1
  fi
  _canhazgpu_eval "$@" --shell zsh --owner-pid $$
}

# Runs the binary and evaluates what it printed, only if it succeeded.
function _canhazgpu_eval {
  emulate -L zsh
  local code
  local -i st=0
  code=$(command canhazgpu "$@") || st=$?
  if (( st == 0 )) && [[ -n $code ]]; then
    eval "$code"
  fi
  return st
}

# Before each prompt. Forks nothing unless the reservation may have ended: its expiry
# passed, or its marker file was deleted by a release elsewhere.
function _canhazgpu_hook {
  local -i st=$?
  emulate -L zsh
  if [[ -n ${CANHAZGPU_OWNER_PID-} ]]; then
    if [[ ${CANHAZGPU_EXPIRES-} != <-> || ${#CANHAZGPU_EXPIRES} -gt 18 ]] ||
       (( ${EPOCHSECONDS:-0} >= 10#${CANHAZGPU_EXPIRES} )) ||
       [[ -n ${CANHAZGPU_LEASE-} && ! -e ${CANHAZGPU_LEASE} ]]; then
      _canhazgpu_eval release --sync --shell zsh --owner-pid $$
    fi
  fi
  return st
}

# On exit: release what this shell holds. A killed shell runs no hook; the next
# canhazgpu command by anyone sees that the shell is gone and frees the GPUs.
function _canhazgpu_exit {
  local -i st=$?
  emulate -L zsh
  if [[ ${CANHAZGPU_OWNER_PID-} == $$ ]]; then
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
# added once however often init is evaluated.
typeset -ga precmd_functions zshexit_functions
(( ${precmd_functions[(Ie)_canhazgpu_hook]} )) || precmd_functions+=(_canhazgpu_hook)
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
