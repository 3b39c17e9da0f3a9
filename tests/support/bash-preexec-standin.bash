# shellcheck shell=bash
# A stand-in for bash-preexec (https://github.com/rcaloras/bash-preexec, 0.5), for the
# tests: it is a single file from GitHub that Debian does not package, and the tests
# fetch nothing. Same mechanism, reduced to what matters to canhazgpu's hook: sourced
# from .bashrc it installs itself at the first prompt (the install string it appends to
# PROMPT_COMMAND), then PROMPT_COMMAND is `__bp_precmd_invoke_cmd`, whatever was there,
# and `__bp_interactive_mode` last; precmd_functions run from the first, and a DEBUG trap
# runs preexec_functions for the next command once the last has armed it, skipping
# commands that are PROMPT_COMMAND's own.

declare -a precmd_functions
declare -a preexec_functions
__bp_inside_precmd=0
__bp_inside_preexec=0
__bp_install_string=$'__bp_trap_string="$(trap -p DEBUG)"\ntrap - DEBUG\n__bp_install'

__bp_trim_whitespace() {
  local var=${1:?} text=${2:-}
  text="${text#"${text%%[![:space:]]*}"}"
  text="${text%"${text##*[![:space:]]}"}"
  printf -v "$var" '%s' "$text"
}

__bp_sanitize_string() {
  local var=${1:?} text=${2:-} sanitized
  __bp_trim_whitespace sanitized "$text"
  sanitized=${sanitized%;}
  sanitized=${sanitized#;}
  __bp_trim_whitespace sanitized "$sanitized"
  printf -v "$var" '%s' "$sanitized"
}

__bp_set_ret_value() {
  return "${1:-}"
}

__bp_precmd_invoke_cmd() {
  # shellcheck disable=SC2034 # for precmd functions to read, as in bash-preexec
  __bp_last_ret_value="$?" BP_PIPESTATUS=("${PIPESTATUS[@]}")
  if ((__bp_inside_precmd > 0)); then
    return
  fi
  local __bp_inside_precmd=1
  local precmd_function
  for precmd_function in "${precmd_functions[@]}"; do
    if type -t "$precmd_function" 1>/dev/null; then
      __bp_set_ret_value "$__bp_last_ret_value"
      "$precmd_function"
    fi
  done
  __bp_set_ret_value "$__bp_last_ret_value"
}

__bp_interactive_mode() {
  __bp_preexec_interactive_mode="on"
}

__bp_in_prompt_command() {
  local prompt_command_array command trimmed_arg trimmed_command
  IFS=$'\n;' read -rd '' -a prompt_command_array <<<"${PROMPT_COMMAND[*]:-}"
  __bp_trim_whitespace trimmed_arg "${1:-}"
  for command in "${prompt_command_array[@]:-}"; do
    __bp_trim_whitespace trimmed_command "$command"
    if [[ "$trimmed_command" == "$trimmed_arg" ]]; then
      return 0
    fi
  done
  return 1
}

__bp_preexec_invoke_exec() {
  if ((__bp_inside_preexec > 0)); then
    return
  fi
  local __bp_inside_preexec=1
  if [[ ! -t 1 ]]; then
    return
  fi
  if [[ -n "${COMP_LINE:-}" ]]; then
    return
  fi
  if [[ -z "${__bp_preexec_interactive_mode:-}" ]]; then
    return
  elif [[ 0 -eq "${BASH_SUBSHELL:-}" ]]; then
    __bp_preexec_interactive_mode=""
  fi
  if __bp_in_prompt_command "${BASH_COMMAND:-}"; then
    __bp_preexec_interactive_mode=""
    return
  fi
  local this_command preexec_function
  this_command=$(HISTTIMEFORMAT='' builtin history 1 | sed '1 s/^ *[0-9][0-9]*[* ] //')
  for preexec_function in "${preexec_functions[@]}"; do
    if type -t "$preexec_function" 1>/dev/null; then
      "$preexec_function" "$this_command"
    fi
  done
}

__bp_install() {
  if [[ "${PROMPT_COMMAND[*]:-}" == *"__bp_precmd_invoke_cmd"* ]]; then
    return 1
  fi
  trap '__bp_preexec_invoke_exec "$_"' DEBUG
  local existing_prompt_command
  existing_prompt_command="${PROMPT_COMMAND:-}"
  existing_prompt_command="${existing_prompt_command//$__bp_install_string/:}"
  existing_prompt_command="${existing_prompt_command//$'\n':$'\n'/$'\n'}"
  existing_prompt_command="${existing_prompt_command//$'\n':;/$'\n'}"
  __bp_sanitize_string existing_prompt_command "$existing_prompt_command"
  if [[ "${existing_prompt_command:-:}" == ":" ]]; then
    existing_prompt_command=
  fi
  PROMPT_COMMAND='__bp_precmd_invoke_cmd'
  PROMPT_COMMAND+=${existing_prompt_command:+$'\n'$existing_prompt_command}
  PROMPT_COMMAND+=('__bp_interactive_mode')
  precmd_functions+=(precmd)
  preexec_functions+=(preexec)
  __bp_precmd_invoke_cmd
  __bp_interactive_mode
}

__bp_install_after_session_init() {
  local sanitized_prompt_command
  __bp_sanitize_string sanitized_prompt_command "${PROMPT_COMMAND:-}"
  # PROMPT_COMMAND is a string until __bp_install makes it an array (bash 5.1+).
  if [[ -n "$sanitized_prompt_command" ]]; then
    # shellcheck disable=SC2178
    PROMPT_COMMAND=${sanitized_prompt_command}$'\n'
  fi
  # shellcheck disable=SC2179
  PROMPT_COMMAND+=${__bp_install_string}
}

__bp_install_after_session_init
