// `coffer completion bash|zsh`: a completion script generated from the command table
// (COMMANDS), the subcommands' specs (their flags and arguments) and, for the commands
// that parse their own flags (server, dev-cluster, operator, sync, wg-agent), the flags
// their help text lists. Plain case statements: bash 3.2 (macOS) runs it too.
import { CHARSETS } from '../secrets/random-value.js';
import { VALUE_FLAGS } from './args.js';
import { AUDIT_SPECS } from './audit-command.js';
import { CLIENT_FLAGS, CLIENT_SPECS, COMMANDS, COMPLETION_SPECS, ROOT_SPECS, type SubSpec } from './commands.js';

/** Flags whose value is a path (completed with file names). */
const PATH_FLAGS = ['file', 'data-dir', 'dir', 'kubeconfig', 'vault-ca-file', 'keys-dir', 'peers-file', 'wireguard-go', 'wg', 'ip'];
/** Flags with a fixed set of values. */
const FLAG_VALUES: Record<string, readonly string[]> = { charset: Object.keys(CHARSETS) };

export interface CompletionModel {
  commands: string[];
  /** command → its subcommands */
  subcommands: Record<string, string[]>;
  /** "command subcommand" (or "command") → the flags it takes, with their dashes */
  flags: Record<string, string[]>;
  /** "command subcommand" (or "command") → its positional arguments' names */
  args: Record<string, readonly string[]>;
  valueFlags: string[];
}

const dashed = (names: Iterable<string>) => [...new Set(names)].map((n) => (n.length === 1 ? `-${n}` : `--${n}`));

/** Every `--flag` a help text names, and those written `--flag VALUE` (they take a value). */
function helpFlags(help: string): { flags: string[]; valued: string[] } {
  const flags = [...help.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!);
  const valued = [...help.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)[ =](?:[A-Z][A-Z0-9_:.-]*|[0-9]+)\b/g)].map((m) => m[1]!);
  return { flags: [...new Set([...flags, 'help'])], valued };
}

function specsOf(name: string): { specs: Readonly<Record<string, SubSpec>>; common: readonly string[] } | undefined {
  if (name === 'audit') return { specs: AUDIT_SPECS, common: CLIENT_FLAGS };
  if (name === 'completion') return { specs: COMPLETION_SPECS, common: ['help'] };
  const specs = CLIENT_SPECS[name];
  return specs ? { specs, common: CLIENT_FLAGS } : undefined;
}

export function completionModel(help: Readonly<Record<string, string>>): CompletionModel {
  const m: CompletionModel = { commands: [...COMMANDS.map((c) => c.name), 'help'], subcommands: {}, flags: {}, args: {}, valueFlags: [] };
  const valued = new Set(VALUE_FLAGS);
  for (const c of COMMANDS) {
    if (c.subcommands.length) m.subcommands[c.name] = [...c.subcommands];
    const root = ROOT_SPECS[c.name];
    const s = specsOf(c.name);
    if (root) {
      m.flags[c.name] = dashed(root.flags);
      m.args[c.name] = root.args;
    } else if (s) {
      m.flags[c.name] = dashed(s.common.includes('help') ? ['help'] : []);
      for (const [verb, spec] of Object.entries(s.specs)) {
        m.flags[`${c.name} ${verb}`] = dashed([...s.common, ...spec.flags]);
        m.args[`${c.name} ${verb}`] = spec.args;
      }
    } else {
      const h = helpFlags(help[c.name] ?? '');
      for (const v of h.valued) valued.add(v);
      m.flags[c.name] = dashed(h.flags);
      for (const verb of c.subcommands) m.flags[`${c.name} ${verb}`] = dashed(h.flags);
    }
  }
  m.subcommands.help = COMMANDS.map((c) => c.name);
  m.valueFlags = dashed([...valued].sort());
  return m;
}

const q = (words: readonly string[]) => words.join(' ');

/** The shell functions both scripts share (POSIX case statements, valid in bash and zsh). */
function tables(m: CompletionModel): string {
  const subs = Object.entries(m.subcommands).map(([c, s]) => `    ${c}) echo "${q(s)}" ;;`);
  const flags = Object.entries(m.flags).map(([k, f]) => `    "${k}") echo "${q(f)}" ;;`);
  const args = Object.entries(m.args).filter(([, a]) => a.length).map(([k, a]) => `    "${k.includes(' ') ? k : `${k} `}") names="${q(a)}" ;;`);
  const values = Object.entries(FLAG_VALUES).map(([f, v]) => `    --${f}) echo "${q(v)}" ;;`);
  return `_coffer_commands="${q(m.commands)}"
_coffer_value_flags="${q(m.valueFlags)}"

# Subcommands of a command.
_coffer_subcommands() {
  case "$1" in
${subs.join('\n')}
  esac
}

# Flags of "command subcommand", else of "command".
_coffer_flags() {
  case "$1 $2" in
${flags.join('\n')}
    *) case "$1" in
${Object.entries(m.flags).filter(([k]) => !k.includes(' ')).map(([k, f]) => `      ${k}) echo "${q(f)}" ;;`).join('\n')}
      esac ;;
  esac
}

# The Nth (from 0) positional argument's name of "command subcommand" (FILE: complete file names).
_coffer_arg() {
  [ -n "$ZSH_VERSION" ] && emulate -L sh
  local names="" k="$3"
  case "$1 $2" in
${args.join('\n')}
  esac
  set -- $names
  [ "$k" -lt "$#" ] || return 0
  shift "$k"
  echo "$1"
}

# Values of a flag that has a fixed set.
_coffer_flag_values() {
  case "$1" in
${values.join('\n')}
  esac
}

_coffer_path_flag() {
  case "$1" in
    ${PATH_FLAGS.map((f) => `--${f}`).join('|')}) return 0 ;;
  esac
  return 1
}`;
}

export function bashScript(m: CompletionModel): string {
  return `# bash completion for coffer, generated by 'coffer completion bash' from coffer's command table.
# This shell: source <(coffer completion bash)
# Every shell: coffer completion bash > "\${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions/coffer"

${tables(m)}

_coffer() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" w i skip=0 n=0 cmd="" sub=""
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if ((skip)); then skip=0; continue; fi
    case "$w" in
      --*=*) ;;
      -*) case " $_coffer_value_flags " in *" $w "*) skip=1 ;; esac ;;
      *)
        if ((n == 0)); then cmd="$w"; elif ((n == 1)); then sub="$w"; fi
        n=$((n + 1))
        ;;
    esac
  done
  if ((skip)); then
    local prev="\${COMP_WORDS[COMP_CWORD-1]}"
    if _coffer_path_flag "$prev"; then
      compopt -o filenames 2>/dev/null
      COMPREPLY=($(compgen -f -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$(_coffer_flag_values "$prev")" -- "$cur"))
    fi
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_coffer_flags "$cmd" "$sub")" -- "$cur"))
    return 0
  fi
  if ((n == 0)); then
    COMPREPLY=($(compgen -W "$_coffer_commands" -- "$cur"))
    return 0
  fi
  local subs
  subs="$(_coffer_subcommands "$cmd")"
  if ((n == 1)) && [[ -n "$subs" ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    return 0
  fi
  local k=$((n - 2))
  [[ -z "$subs" ]] && { k=$((n - 1)); sub=""; }
  if [[ "$(_coffer_arg "$cmd" "$sub" "$k")" == FILE ]]; then
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
  return 0
}

complete -F _coffer coffer
`;
}

export function zshScript(m: CompletionModel): string {
  return `#compdef coffer
# zsh completion for coffer, generated by 'coffer completion zsh' from coffer's command table.
# This shell (after compinit): source <(coffer completion zsh)
# Every shell: mkdir -p ~/.zfunc && coffer completion zsh > ~/.zfunc/_coffer
#              and in ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath)

${tables(m)}

_coffer() {
  local cur="\${words[CURRENT]}" w i skip=0 n=0 cmd="" sub=""
  for ((i = 2; i < CURRENT; i++)); do
    w="\${words[i]}"
    if ((skip)); then skip=0; continue; fi
    case "$w" in
      --*=*) ;;
      -*) [[ " $_coffer_value_flags " == *" $w "* ]] && skip=1 ;;
      *)
        if ((n == 0)); then cmd="$w"; elif ((n == 1)); then sub="$w"; fi
        n=$((n + 1))
        ;;
    esac
  done
  if ((skip)); then
    local prev="\${words[CURRENT-1]}"
    if _coffer_path_flag "$prev"; then _files; else compadd -- \${=$(_coffer_flag_values "$prev")}; fi
    return
  fi
  if [[ "$cur" == -* ]]; then
    compadd -- \${=$(_coffer_flags "$cmd" "$sub")}
    return
  fi
  if ((n == 0)); then
    compadd -- \${=_coffer_commands}
    return
  fi
  local subs="$(_coffer_subcommands "$cmd")"
  if ((n == 1)) && [[ -n "$subs" ]]; then
    compadd -- \${=subs}
    return
  fi
  local k=$((n - 2))
  [[ -z "$subs" ]] && { k=$((n - 1)); sub=""; }
  [[ "$(_coffer_arg "$cmd" "$sub" "$k")" == FILE ]] && _files
  return 0
}

if [[ "\${funcstack[1]}" == "_coffer" ]]; then
  _coffer "$@"
else
  compdef _coffer coffer
fi
`;
}
