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

# Every variable a reservation sets and a release restores (the binary's list).
_canhazgpu_vars=(
  CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES CUDA_DEVICE_ORDER
  HIP_VISIBLE_DEVICES ROCR_VISIBLE_DEVICES
  CANHAZGPU_GPUS CANHAZGPU_DEVICES CANHAZGPU_EXPIRES CANHAZGPU_OWNER_PID CANHAZGPU_LEASE
  CANHAZGPU_SHELL_STORE CANHAZGPU_RESTORE
)

function canhazgpu {
  local _chg_arg _chg_sub='' _chg_skip='' _chg_status=0
  # The subcommand is the first word that is not an option or an option's value.
  for _chg_arg in "$@"; do
    if [[ -n "${_chg_skip}" ]]; then
      _chg_skip=''
      continue
    fi
    case ${_chg_arg} in
      --store | --config) _chg_skip=1 ;;
      -*) ;;
      *)
        _chg_sub=${_chg_arg}
        break
        ;;
    esac
  done
  case ${_chg_sub} in
    reserve | release) ;;
    *) _chg_sub='' ;;
  esac
  for _chg_arg in "$@"; do
    case ${_chg_arg} in
      -h | --help) _chg_sub='' ;;
      *) ;;
    esac
  done
  if [[ -z "${_chg_sub}" ]]; then
    _canhazgpu_pass "$@"
    return
  fi
  if [[ "${BASHPID:-$$}" != "$$" ]]; then
    # A subshell's exports die with it, and its $$ is still the parent's. Only
    # `eval "$(canhazgpu reserve)"` can work: the binary checks that its output goes
    # back to this shell, and prints the code for it instead of evaluating it here.
    (_canhazgpu_exec "$@" --shell bash --owner-pid "$$" --subshell) || _chg_status=$?
  else
    _canhazgpu_eval "$@" --shell bash --owner-pid "$$" || _chg_status=$?
  fi
  if [[ "${_chg_status}" -eq 127 ]]; then
    _canhazgpu_not_found
  fi
  return "${_chg_status}"
}

# Every other subcommand goes to the binary. Through eval, so that `jobs` shows a
# suspended `canhazgpu run` as the command it is rather than as this function's text.
function _canhazgpu_pass {
  local _chg_words=''
  if [[ "$#" -gt 0 ]]; then
    printf -v _chg_words ' %q' "$@"
  fi
  eval "command canhazgpu${_chg_words}"
}

# Runs the binary and evaluates what it printed, only if it succeeded.
function _canhazgpu_eval {
  local _chg_code _chg_status=0
  _chg_code=$(_canhazgpu_exec "$@") || _chg_status=$?
  if [[ "${_chg_status}" -eq 0 ]] && [[ -n "${_chg_code}" ]]; then
    eval "${_chg_code}"
  fi
  return "${_chg_status}"
}

# In a subshell: describes this shell's variables to the binary and runs it; status
# 127, and not a word, when there is no binary (the callers say it, once).
function _canhazgpu_exec {
  hash -r
  type -P canhazgpu >/dev/null || return 127
  _canhazgpu_describe
  command canhazgpu "$@"
}

# Tells the binary, in the environment of this subshell only, how the shell keeps each
# variable it manages: exported or not, and the attributes an assignment would trip
# over (readonly, declare -i...). Unexported values are exported here, so that the
# binary can save them and give them back unexported.
function _canhazgpu_describe {
  local - _chg_name _chg_attrs _chg_all=''
  set +u
  for _chg_name in "${_canhazgpu_vars[@]}"; do
    eval "_chg_attrs=\${${_chg_name}@a}"
    if [[ -R ${_chg_name} ]]; then
      _chg_attrs+=R
    elif [[ -v ${_chg_name} && ${_chg_attrs} != *x* ]]; then
      export "${_chg_name?}"
    fi
    _chg_all+="${_chg_name}=${_chg_attrs} "
  done
  export _CANHAZGPU_ATTRS="${_chg_all}"
}

function _canhazgpu_not_found {
  printf '%s %s %s\n' \
    "canhazgpu: the canhazgpu binary is not on PATH, so this shell's GPU variables" \
    "(CANHAZGPU_GPUS=${CANHAZGPU_GPUS-}) cannot be reserved, released or kept in step" \
    "with the store; put it back on PATH (PATH=${PATH})" >&2
}

# Before each prompt. Forks nothing unless the reservation may have ended: its expiry
# passed, its marker file was deleted by a release elsewhere, or the time the binary
# set for a look anyway (a few minutes) came.
function _canhazgpu_hook {
  local _chg_status=$? _chg_now _chg_synced=0
  if [[ -n "${CANHAZGPU_OWNER_PID-}" ]]; then
    printf -v _chg_now '%(%s)T' -1
    if [[ ! ${_canhazgpu_check-} =~ ^[0-9]{1,18}$ ]]; then
      _canhazgpu_check=0
    fi
    if [[ ! ${CANHAZGPU_EXPIRES-} =~ ^[0-9]{1,18}$ ]] ||
      ((_chg_now >= 10#${CANHAZGPU_EXPIRES} || _chg_now >= 10#${_canhazgpu_check})) ||
      [[ -n ${CANHAZGPU_LEASE-} && ! -e ${CANHAZGPU_LEASE} ]]; then
      # Until the binary says when next (it cannot when it fails): in a minute.
      _canhazgpu_check=$((_chg_now + 60))
      _canhazgpu_eval release --sync --shell bash --owner-pid "$$" || _chg_synced=$?
      if [[ "${_chg_synced}" -ne 127 ]]; then
        _canhazgpu_missing=''
      elif [[ -z "${_canhazgpu_missing-}" ]]; then
        _canhazgpu_missing=1
        _canhazgpu_not_found
      fi
    fi
  fi
  return "${_chg_status}"
}

# On exit: release what this shell holds. A killed shell runs no trap; the next
# canhazgpu command by anyone sees that the shell is gone and frees the GPUs.
function _canhazgpu_exit {
  local _chg_status=$?
  if [[ "${CANHAZGPU_OWNER_PID-}" = "$$" ]] && [[ "${BASHPID:-$$}" = "$$" ]] &&
    type -P canhazgpu >/dev/null; then
    command canhazgpu release --owner-pid "$$" || :
  fi
  return "${_chg_status}"
}

# Prints e.g. `gpu:1,5 3h59m` when this shell holds GPUs, nothing otherwise. Reads only
# variables (it works with PATH empty). CANHAZGPU_PROMPT_FORMAT overrides the format;
# {gpus}, {count} and {left} are replaced.
function canhazgpu_prompt {
  local _chg_status=$? _chg_now _chg_left='?' _chg_out _chg_commas
  local _chg_gpus=${CANHAZGPU_GPUS-}
  if [[ ! ${_chg_gpus} =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    return "${_chg_status}"
  fi
  if [[ ${CANHAZGPU_EXPIRES-} =~ ^[0-9]{1,18}$ ]]; then
    printf -v _chg_now '%(%s)T' -1
    _chg_left=$((10#${CANHAZGPU_EXPIRES} - _chg_now))
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
  if [[ -z "${_chg_out}" ]]; then
    _chg_out='gpu:{gpus} {left}'
  fi
  _chg_commas=${_chg_gpus//[!,]/}
  _chg_out=${_chg_out//'{gpus}'/"${_chg_gpus}"}
  _chg_out=${_chg_out//'{count}'/"$((${#_chg_commas} + 1))"}
  _chg_out=${_chg_out//'{left}'/"${_chg_left}"}
  printf '%s' "${_chg_out}"
  return "${_chg_status}"
}

# Put first, so that prompt builders that run from PROMPT_COMMAND (powerline-go,
# liquidprompt, starship) already see the variables as they are now; in whichever form
# PROMPT_COMMAND has (a string, or an array since bash 5.1). $? stays what the command
# left; PIPESTATUS is this hook's by then, which no function can help. A newline rather
# than `;` keeps a string that ends in a comment or `;` valid. With bash-preexec loaded
# before this, whose own entries must stay first and last in PROMPT_COMMAND, the hook
# goes first in its precmd_functions instead.
function _canhazgpu_install_hook {
  local - _chg_entry
  set +u
  for _chg_entry in "${PROMPT_COMMAND[@]}" "${precmd_functions[@]}"; do
    if [[ ${_chg_entry} == *_canhazgpu_hook* ]]; then
      return 0
    fi
  done
  if declare -F __bp_precmd_invoke_cmd >/dev/null; then
    precmd_functions=(_canhazgpu_hook "${precmd_functions[@]}")
    return 0
  fi
  if [[ ${PROMPT_COMMAND@a} == *a* ]]; then
    PROMPT_COMMAND=(_canhazgpu_hook "${PROMPT_COMMAND[@]}")
    return 0
  fi
  # Here PROMPT_COMMAND is a string or unset, which shellcheck cannot tell.
  # shellcheck disable=SC2128,SC2178
  PROMPT_COMMAND="_canhazgpu_hook${PROMPT_COMMAND:+
${PROMPT_COMMAND}}"
}

# Chained in front of an EXIT trap that is already set, which keeps running after ours.
function _canhazgpu_install_exit_trap {
  local _chg_previous
  _chg_previous=$(trap -p EXIT)
  case ${_chg_previous} in
    *_canhazgpu_exit*) return 0 ;;
    *) ;;
  esac
  _chg_previous=${_chg_previous#"trap -- "}
  _chg_previous=${_chg_previous%" EXIT"}
  if [[ -n "${_chg_previous}" ]]; then
    # `trap -p` quotes the command for reuse as shell input; evaluating that one
    # quoted word gets the command text back.
    eval "_chg_previous=${_chg_previous}"
    trap -- "_canhazgpu_exit
${_chg_previous}" EXIT
  else
    trap -- _canhazgpu_exit EXIT
  fi
}

_canhazgpu_install_hook
_canhazgpu_install_exit_trap

# Variables inherited from a shell that is not an ancestor of this one (a tmux server
# started from a shell that held GPUs passes them to every pane) describe GPUs this
# shell does not hold. Only then is the binary asked, once, at startup.
if [[ -n "${CANHAZGPU_OWNER_PID-}" ]] && [[ "${CANHAZGPU_OWNER_PID-}" != "$$" ]]; then
  _canhazgpu_eval release --inherited --shell bash --owner-pid "$$" || :
fi

# Completion: the function has the binary's name, so completions registered for the
# binary apply to it. If none is registered yet, load the generated ones on first use.
function _canhazgpu_complete {
  local _chg_code
  _chg_code=$(command canhazgpu completions bash 2>/dev/null) || return 0
  eval "${_chg_code}"
  if declare -F _canhazgpu >/dev/null; then
    _canhazgpu "$@"
  fi
}
if ! complete -p canhazgpu >/dev/null 2>&1; then
  complete -F _canhazgpu_complete -o bashdefault -o default canhazgpu
fi
