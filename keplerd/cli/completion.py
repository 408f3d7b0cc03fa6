"""keplerctl completion bash|zsh: print a completion script for the shell.

The commands and flags in the script are read from keplerctl's own argument
parser, so they never drift from it. Service names are asked at completion time
(``keplerctl completion SHELL --services`` lists those of the current config).
"""

import argparse
import os
import signal
import sys

from keplerd.cli.client import CommandError

SERVICES = "@services"  # in a command's ARGS: complete service names

_SPEC_ENTRY = '        "{path}") subs="{subs}"; opts="{opts}"; vopts="{vopts}"; args="{args}" ;;'

# Shared by both shells (zsh runs this bash-compatible subset as is). Sets `cmd`
# (the command path typed so far), `file` (the config given by -f/--file) and
# `skip` (1 when the word being completed is the value of an option).
_WALK = '''\
    _keplerctl_spec ""
    for ((i = FIRST; i < LAST; i++)); do
        word=${WORDS[i]}
        if ((skip)); then
            skip=0
            continue
        fi
        case " $vopts " in
            *" $word "*)
                skip=1
                if [[ $word == -f || $word == --file ]]; then file=${WORDS[i + 1]}; fi
                continue ;;
        esac
        [[ $word == -* ]] && continue
        case " $subs " in
            *" $word "*)
                cmd=${cmd:+$cmd }$word
                _keplerctl_spec "$cmd" ;;
        esac
    done'''

_BASH = '''\
# bash completion for keplerctl, printed by `keplerctl completion bash`.
# Use: source <(keplerctl completion bash)

_keplerctl_spec() {
    case "$1" in
SPEC
    esac
}

_keplerctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmd="" file="" subs="" opts="" vopts="" args="" word i skip=0
    local -a config
WALK
    if ((skip)); then
        case ${COMP_WORDS[COMP_CWORD - 1]} in
            -f|--file) COMPREPLY=($(compgen -f -- "$cur")) ;;
            -s|--signal) COMPREPLY=($(compgen -W "SIGNALS" -- "$cur")) ;;
            *) COMPREPLY=() ;;
        esac
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n $subs ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    elif [[ $args == @services ]]; then
        [[ -n $file ]] && config=(--file "$file")
        COMPREPLY=($(compgen -W "$(keplerctl "${config[@]}" completion bash --services 2>/dev/null)" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$args" -- "$cur"))
    fi
}

complete -F _keplerctl keplerctl
'''

_ZSH = '''\
#compdef keplerctl
# zsh completion for keplerctl, printed by `keplerctl completion zsh`.
# Use: source <(keplerctl completion zsh), or save it as _keplerctl in your $fpath.

_keplerctl_spec() {
    case "$1" in
SPEC
    esac
}

_keplerctl() {
    local cur=${words[CURRENT]} cmd="" file="" subs="" opts="" vopts="" args="" word i skip=0
    local -a names config
WALK
    if ((skip)); then
        case ${words[CURRENT - 1]} in
            -f|--file) _files ;;
            -s|--signal) compadd -- SIGNALS ;;
        esac
        return
    fi
    if [[ $cur == -* ]]; then
        compadd -- ${=opts}
    elif [[ -n $subs ]]; then
        compadd -- ${=subs}
    elif [[ $args == @services ]]; then
        [[ -n $file ]] && config=(--file "$file")
        names=(${(f)"$(keplerctl "${config[@]}" completion zsh --services 2>/dev/null)"})
        compadd -- $names
    else
        compadd -- ${=args}
    fi
}

if [[ $funcstack[1] == _keplerctl ]]; then
    _keplerctl "$@"
else
    compdef _keplerctl keplerctl
fi
'''


def completion(context):
    """Print the completion script for bash or zsh (or, with --services, the service names)."""
    if context.args.services:
        return _print_services(context)
    from keplerd.cli.main import build_parser

    print(script(context.args.shell, build_parser()), end="")
    return 0


def script(shell, parser):
    """Return the completion script of *shell* (``bash`` or ``zsh``) for *parser*."""
    if shell == "bash":
        template, words, first, last = _BASH, "COMP_WORDS", "1", "COMP_CWORD"
    else:
        template, words, first, last = _ZSH, "words", "2", "CURRENT"
    walk = _WALK.replace("WORDS", words).replace("FIRST", first).replace("LAST", last)
    spec = "\n".join(_SPEC_ENTRY.format(path=path, **entry) for path, entry in command_specs(parser).items())
    signals = " ".join(sorted(member.name for member in signal.Signals if not member.name.startswith("SIG_")))
    return template.replace("SPEC", spec).replace("WALK", walk).replace("SIGNALS", signals)


def command_specs(parser, path=""):
    """Return ``{command path: {subs, opts, vopts, args}}`` for *parser* and its subcommands."""
    entry = {"subs": "", "opts": [], "vopts": [], "args": ""}
    specs = {path: entry}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            entry["subs"] = " ".join(action.choices)
            for name, subparser in action.choices.items():
                specs.update(command_specs(subparser, f"{path} {name}".strip()))
        elif action.option_strings and action.help != argparse.SUPPRESS:
            entry["opts"].extend(action.option_strings)
            if action.nargs != 0:
                entry["vopts"].extend(action.option_strings)
        elif not action.option_strings:
            entry["args"] = SERVICES if action.dest == "services" else " ".join(action.choices or ())
    entry["opts"] = " ".join(entry["opts"])
    entry["vopts"] = " ".join(entry["vopts"])
    return specs


def _print_services(context):
    """Print the service names of the current config, one a line (nothing when it has none)."""
    from keplerd.config.errors import ConfigError
    from keplerd.config.loader import load_yaml

    try:
        path = context.config_path
        with open(path, "rb") as file:
            tree = load_yaml(file.read(), os.path.basename(path))
    except (CommandError, ConfigError, OSError):
        return 0  # nothing to offer: completion stays quiet
    services = tree.get("services") if isinstance(tree, dict) else None
    if isinstance(services, dict):
        sys.stdout.write("".join(f"{name}\n" for name in services))
    return 0
