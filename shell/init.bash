# shellcheck shell=bash
# canhazgpu shell integration for bash (4.4 or newer). Load it from ~/.bashrc with
#     eval "$(canhazgpu init bash)"
#
# `canhazgpu reserve` and `canhazgpu release` then change this shell's environment: the
# function below runs the binary with this shell's PID and evaluates the shell code it
# prints on stdout (messages go to stderr). The reservation ends when this shell exits.
# A prompt hook drops the variables when the reservation ends behind the shell's back,
# and `canhazgpu_prompt` prints a segment for PS1. Everything else passes straight
# through to the binary. Names starting with _canhazgpu are internal.

function canhazgpu {
  local _chg_arg _chg_sub='' _chg_skip=''
  # The subcommand is the first word that is not an option or an option's value.
  for _chg_arg in "$@"; do
    if [ -n "$_chg_skip" ]; then
      _chg_skip=''
      continue
    fi
    case $_chg_arg in
      --store | --config) _chg_skip=1 ;;
      -*) ;;
      *)
        _chg_sub=$_chg_arg
        break
        ;;
    esac
  done
  case $_chg_sub in
    reserve | release) ;;
    *)
      command canhazgpu "$@"
      return
      ;;
  esac
  for _chg_arg in "$@"; do
    case $_chg_arg in
      -h | --help)
        command canhazgpu "$@"
        return
        ;;
    esac
  done
  # A subshell's exports die with it, and its $$ is still the parent's: refuse rather
  # than bind GPUs to a shell whose environment never sees them.
  if [ "${BASHPID:-$$}" != "$$" ]; then
    printf '%s\n' "canhazgpu: $_chg_sub in a subshell ( ), a pipeline or \$( ) cannot change this shell's environment; run it as a command of its own" >&2
    return 1
  fi
  _canhazgpu_eval "$@" --shell bash --owner-pid "$$"
}

# Runs the binary and evaluates what it printed, only if it succeeded.
function _canhazgpu_eval {
  local _chg_code _chg_status=0
  _chg_code=$(command canhazgpu "$@") || _chg_status=$?
  if [ "$_chg_status" -eq 0 ] && [ -n "$_chg_code" ]; then
    eval "$_chg_code"
  fi
  return "$_chg_status"
}

# Before each prompt. Forks nothing unless the reservation may have ended: its expiry
# passed, or its marker file was deleted by a release elsewhere.
function _canhazgpu_hook {
  local _chg_status=$? _chg_now
  if [ -n "${CANHAZGPU_OWNER_PID-}" ]; then
    printf -v _chg_now '%(%s)T' -1
    if [[ ! ${CANHAZGPU_EXPIRES-} =~ ^[0-9]{1,18}$ ]] ||
      ((_chg_now >= 10#$CANHAZGPU_EXPIRES)) ||
      [[ -n ${CANHAZGPU_LEASE-} && ! -e ${CANHAZGPU_LEASE} ]]; then
      _canhazgpu_eval release --sync --shell bash --owner-pid "$$" || :
    fi
  fi
  return "$_chg_status"
}

# On exit: release what this shell holds. A killed shell runs no trap; the next
# canhazgpu command by anyone sees that the shell is gone and frees the GPUs.
function _canhazgpu_exit {
  local _chg_status=$?
  if [ "${CANHAZGPU_OWNER_PID-}" = "$$" ] && [ "${BASHPID:-$$}" = "$$" ]; then
    command canhazgpu release --owner-pid "$$" || :
  fi
  return "$_chg_status"
}

# Prints e.g. `gpu:1,5 3h59m` when this shell holds GPUs, nothing otherwise. Reads only
# variables (it works with PATH empty). CANHAZGPU_PROMPT_FORMAT overrides the format;
# {gpus}, {count} and {left} are replaced.
function canhazgpu_prompt {
  local _chg_status=$? _chg_now _chg_left='?' _chg_out _chg_commas
  local _chg_gpus=${CANHAZGPU_GPUS-}
  if [[ ! $_chg_gpus =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    return "$_chg_status"
  fi
  if [[ ${CANHAZGPU_EXPIRES-} =~ ^[0-9]{1,18}$ ]]; then
    printf -v _chg_now '%(%s)T' -1
    _chg_left=$((10#$CANHAZGPU_EXPIRES - _chg_now))
    if ((_chg_left >= 3600)); then
      _chg_left="$((_chg_left / 3600))h$((_chg_left % 3600 / 60))m"
    elif ((_chg_left >= 60)); then
      _chg_left="$((_chg_left / 60))m"
    elif ((_chg_left > 0)); then
      _chg_left="${_chg_left}s"
    else
      _chg_left=expired
    fi
  fi
  _chg_out=${CANHAZGPU_PROMPT_FORMAT-}
  if [ -z "$_chg_out" ]; then
    _chg_out='gpu:{gpus} {left}'
  fi
  _chg_commas=${_chg_gpus//[!,]/}
  _chg_out=${_chg_out//'{gpus}'/"$_chg_gpus"}
  _chg_out=${_chg_out//'{count}'/"$((${#_chg_commas} + 1))"}
  _chg_out=${_chg_out//'{left}'/"$_chg_left"}
  printf '%s' "$_chg_out"
  return "$_chg_status"
}

# Appended, in whichever form PROMPT_COMMAND has (a string, or an array since bash
# 5.1), so that hooks already there still see the command's $? and PIPESTATUS. A
# newline rather than `;` keeps a string that ends in a comment or `;` valid.
function _canhazgpu_install_hook {
  local - _chg_entry
  set +u
  if [[ ${PROMPT_COMMAND@a} == *a* ]]; then
    for _chg_entry in "${PROMPT_COMMAND[@]}"; do
      if [[ $_chg_entry == *_canhazgpu_hook* ]]; then
        return 0
      fi
    done
    PROMPT_COMMAND+=(_canhazgpu_hook)
    return 0
  fi
  # Here PROMPT_COMMAND is a string or unset, which shellcheck cannot tell.
  # shellcheck disable=SC2128,SC2178
  if [[ $PROMPT_COMMAND != *_canhazgpu_hook* ]]; then
    PROMPT_COMMAND="${PROMPT_COMMAND:+$PROMPT_COMMAND
}_canhazgpu_hook"
  fi
}

# Chained in front of an EXIT trap that is already set, which keeps running after ours.
function _canhazgpu_install_exit_trap {
  local _chg_previous
  _chg_previous=$(trap -p EXIT)
  case $_chg_previous in
    *_canhazgpu_exit*) return 0 ;;
  esac
  _chg_previous=${_chg_previous#"trap -- "}
  _chg_previous=${_chg_previous%" EXIT"}
  if [ -n "$_chg_previous" ]; then
    # `trap -p` quotes the command for reuse as shell input; evaluating that one
    # quoted word gets the command text back.
    eval "_chg_previous=$_chg_previous"
    trap -- "_canhazgpu_exit
$_chg_previous" EXIT
  else
    trap -- _canhazgpu_exit EXIT
  fi
}

_canhazgpu_install_hook
_canhazgpu_install_exit_trap

# Variables inherited from a shell that is not an ancestor of this one (a tmux server
# started from a shell that held GPUs passes them to every pane) describe GPUs this
# shell does not hold. Only then is the binary asked, once, at startup.
if [ -n "${CANHAZGPU_OWNER_PID-}" ] && [ "${CANHAZGPU_OWNER_PID-}" != "$$" ]; then
  _canhazgpu_eval release --inherited --shell bash --owner-pid "$$" || :
fi

# Completion: the function has the binary's name, so completions registered for the
# binary apply to it. If none is registered yet, load the generated ones on first use.
function _canhazgpu_complete {
  local _chg_code
  _chg_code=$(command canhazgpu completions bash 2>/dev/null) || return 0
  eval "$_chg_code"
  if declare -F _canhazgpu >/dev/null; then
    _canhazgpu "$@"
  fi
}
if ! complete -p canhazgpu >/dev/null 2>&1; then
  complete -F _canhazgpu_complete -o bashdefault -o default canhazgpu
fi
