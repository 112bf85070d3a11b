//! The bash and zsh completion scripts, generated from the command table: the commands first
//! (and `--help`, `--version`); after a command, its options, and its operands where they can be
//! completed (a bundle file, a shell); after an option, its value where it can be completed (a
//! file, a folder). `gscluster completions bash|zsh` prints them; the packages install them,
//! committed under `packaging/completions/` (a test keeps those files equal to these).

use super::table::{Command, Kind, Opt, COMMANDS, GLOBAL};
use std::fmt::Write;

/// The script for `shell`; `None` for a shell there is none for.
pub fn script(shell: &str) -> Option<String> {
    match shell {
        "bash" => Some(bash()),
        "zsh" => Some(zsh()),
        _ => None,
    }
}

/// The names of every option that takes a value (`["-c", "--config"]`), each once, in table
/// order.
fn valued_options() -> Vec<&'static [&'static str]> {
    let mut out: Vec<&'static [&'static str]> = Vec::new();
    for opt in COMMANDS.iter().flat_map(|c| c.options) {
        if opt.value.is_some() && !out.contains(&opt.names) {
            out.push(opt.names);
        }
    }
    out
}

/// Every option name that takes a value.
fn valued_names() -> Vec<&'static str> {
    valued_options().into_iter().flatten().copied().collect()
}

/// The kind of the value the option `name` takes before any command is given: the same in every
/// command that has it, or `None` (nothing is completed for it).
fn kind_before_command(name: &str) -> Option<Kind> {
    let mut kinds = COMMANDS
        .iter()
        .filter_map(|c| c.option(name))
        .filter_map(|o| o.value.map(|v| v.kind));
    let first = kinds.next()?;
    kinds.all(|k| k == first).then_some(first)
}

fn words(list: &[&str]) -> String {
    list.join(" ")
}

/// The bash completion script: `complete -F _gscluster gscluster`.
pub fn bash() -> String {
    let mut s = String::new();
    s.push_str(
        "# bash completion for gscluster, generated from its command table by\n\
         # `gscluster completions bash`; the packages install it as\n\
         # /usr/share/bash-completion/completions/gscluster.\n\n",
    );
    s.push_str(
        "# COMPREPLY: the words of $2 (one string) that start with $1.\n\
         _gscluster_words() {\n    mapfile -t COMPREPLY < <(compgen -W \"$2\" -- \"$1\")\n}\n\n\
         # COMPREPLY: the files (with -d: the folders) whose names start with $1.\n\
         _gscluster_files() {\n    compopt -o filenames 2>/dev/null\n    \
         mapfile -t COMPREPLY < <(compgen \"${2:--f}\" -- \"$1\")\n}\n\n",
    );
    s.push_str(
        "_gscluster() {\n    \
         local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"\" cmd=\"\" operands=0 i=1\n    \
         [ \"$COMP_CWORD\" -gt 0 ] && prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n    \
         COMPREPLY=()\n    \
         # The command is the first word that is no option and no option's value; the words\n    \
         # after it that are neither are its operands.\n    \
         while [ \"$i\" -lt \"$COMP_CWORD\" ]; do\n        \
         case \"${COMP_WORDS[i]}\" in\n",
    );
    let _ = writeln!(
        s,
        "            {}) i=$((i + 1)) ;;",
        valued_names().join("|")
    );
    s.push_str(
        "            -*) ;;\n            \
         *) if [ -z \"$cmd\" ]; then cmd=\"${COMP_WORDS[i]}\"; else operands=$((operands + 1)); fi ;;\n        \
         esac\n        i=$((i + 1))\n    done\n    case \"$cmd\" in\n",
    );
    // Before a command: the value of an option given first, the global options, the commands.
    s.push_str("        \"\")\n            case \"$prev\" in\n");
    for names in valued_options() {
        let _ = writeln!(
            s,
            "                {}) {}; return 0 ;;",
            names.join("|"),
            bash_value(kind_before_command(names[0]))
        );
    }
    let globals: Vec<&str> = GLOBAL.iter().map(|o| o.long()).collect();
    let commands: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    let _ = write!(
        s,
        "            esac\n            \
         if [[ \"$cur\" == -* ]]; then\n                \
         _gscluster_words \"$cur\" \"{}\"\n            \
         else\n                \
         _gscluster_words \"$cur\" \"{}\"\n            \
         fi\n            ;;\n",
        words(&globals),
        words(&commands)
    );
    for cmd in COMMANDS {
        bash_command(&mut s, cmd);
    }
    s.push_str("    esac\n    return 0\n}\n\ncomplete -F _gscluster gscluster\n");
    s
}

/// What completes a value of this kind in bash (`None`: nothing, the word is the user's).
fn bash_value(kind: Option<Kind>) -> String {
    match kind {
        Some(Kind::File) => "_gscluster_files \"$cur\"".into(),
        Some(Kind::Dir) => "_gscluster_files \"$cur\" -d".into(),
        Some(Kind::OneOf(list)) => format!("_gscluster_words \"$cur\" \"{}\"", words(list)),
        _ => ":".into(),
    }
}

fn completable(kind: Kind) -> bool {
    matches!(kind, Kind::File | Kind::Dir | Kind::OneOf(_))
}

fn bash_command(s: &mut String, cmd: &Command) {
    let _ = writeln!(s, "        {})", cmd.name);
    let valued: Vec<&Opt> = cmd.options.iter().filter(|o| o.value.is_some()).collect();
    if !valued.is_empty() {
        s.push_str("            case \"$prev\" in\n");
        for opt in valued {
            let kind = opt.value.map(|v| v.kind);
            let _ = writeln!(
                s,
                "                {}) {}; return 0 ;;",
                opt.names.join("|"),
                bash_value(kind)
            );
        }
        s.push_str("            esac\n");
    }
    if let Some(o) = cmd.operands.as_ref().filter(|o| completable(o.arg.kind)) {
        let room = if o.many {
            String::new()
        } else {
            " && [ \"$operands\" -eq 0 ]".into()
        };
        let _ = writeln!(
            s,
            "            if [[ \"$cur\" != -* ]]{room}; then {}; return 0; fi",
            bash_value(Some(o.arg.kind))
        );
    }
    let options: Vec<&str> = cmd.options.iter().flat_map(|o| o.names).copied().collect();
    if !options.is_empty() {
        let _ = writeln!(
            s,
            "            _gscluster_words \"$cur\" \"{}\"",
            words(&options)
        );
    }
    s.push_str("            ;;\n");
}

/// The zsh completion script, for `fpath` as `_gscluster` (or to source).
pub fn zsh() -> String {
    let mut s = String::new();
    s.push_str(
        "#compdef gscluster\n\
         # zsh completion for gscluster, generated from its command table by\n\
         # `gscluster completions zsh`; the packages install it as\n\
         # /usr/share/zsh/vendor-completions/_gscluster.\n\n\
         _gscluster() {\n    \
         local cmd=\"\" i=2\n    \
         local -a commands globals\n",
    );
    s.push_str("    commands=(\n");
    for cmd in COMMANDS {
        let _ = writeln!(s, "        '{}:{}'", cmd.name, quoted(cmd.help));
    }
    s.push_str("    )\n    globals=(\n");
    for opt in GLOBAL {
        for name in opt.names {
            let _ = writeln!(s, "        '{name}:{}'", quoted(opt.help));
        }
    }
    s.push_str(
        "    )\n    \
         # The command is the first word that is no option and no option's value.\n    \
         while (( i < CURRENT )); do\n        \
         case ${words[i]} in\n",
    );
    let _ = writeln!(s, "            ({}) (( i++ )) ;;", valued_names().join("|"));
    s.push_str(
        "            (-*) ;;\n            \
         (*) cmd=${words[i]}; break ;;\n        \
         esac\n        (( i++ ))\n    done\n    case $cmd in\n",
    );
    // Before a command: the value of an option given first, the global options, the commands.
    s.push_str("        ('')\n            case ${words[CURRENT-1]} in\n");
    for names in valued_options() {
        let _ = writeln!(
            s,
            "                ({}) {}; return ;;",
            names.join("|"),
            zsh_value(kind_before_command(names[0]))
        );
    }
    s.push_str(
        "            esac\n            \
         if [[ $PREFIX == -* ]]; then\n                \
         _describe -t options 'option' globals\n            \
         else\n                \
         _describe -t commands 'gscluster command' commands\n            \
         fi\n            ;;\n",
    );
    for cmd in COMMANDS {
        zsh_command(&mut s, cmd);
    }
    s.push_str(
        "        (*) _message 'no completion for an unknown command' ;;\n    esac\n}\n\n\
         # Autoloaded from fpath, the file is the function's body: define it, then run it.\n\
         # Sourced, it registers the function instead.\n\
         if [[ $funcstack[1] == _gscluster ]]; then\n    \
         _gscluster \"$@\"\nelse\n    compdef _gscluster gscluster\nfi\n",
    );
    s
}

/// What completes a value of this kind in zsh, as a command (`_files`) for `case`.
fn zsh_value(kind: Option<Kind>) -> String {
    match kind {
        Some(Kind::File) => "_files".into(),
        Some(Kind::Dir) => "_files -/".into(),
        Some(Kind::OneOf(list)) => format!("compadd -- {}", words(list)),
        _ => "_message 'a value'".into(),
    }
}

/// `text` for the inside of single quotes (the help texts have no `[`, `]` or `\\`: a test of the
/// table keeps them so).
fn quoted(text: &str) -> String {
    text.replace('\'', "'\\''")
}

/// The same as an action of an `_arguments` spec.
fn zsh_action(kind: Kind) -> String {
    match kind {
        Kind::File => "_files".into(),
        Kind::Dir => "_files -/".into(),
        Kind::OneOf(list) => format!("({})", words(list)),
        // A blank action: the message alone, no completion.
        _ => " ".into(),
    }
}

fn zsh_command(s: &mut String, cmd: &Command) {
    let _ = write!(
        s,
        "        ({})\n            _arguments \\\n                ':command:({})'",
        cmd.name, cmd.name
    );
    for opt in cmd.options {
        let exclusive = if opt.names.len() > 1 {
            format!("({})", opt.names.join(" "))
        } else {
            String::new()
        };
        for name in opt.names {
            let (form, value) = match opt.value {
                // `--out=FILE` as well as `--out FILE`.
                Some(v) if name.starts_with("--") => {
                    ("=", format!(":{}:{}", v.meta, zsh_action(v.kind)))
                }
                Some(v) => ("", format!(":{}:{}", v.meta, zsh_action(v.kind))),
                None => ("", String::new()),
            };
            let _ = write!(
                s,
                " \\\n                '{exclusive}{name}{form}[{}]{value}'",
                quoted(opt.help)
            );
        }
    }
    if let Some(o) = &cmd.operands {
        let position = match (o.many, o.required) {
            (true, _) => "*",
            (false, true) => "",
            (false, false) => ":",
        };
        let _ = write!(
            s,
            " \\\n                '{position}:{}:{}'",
            o.arg.meta,
            zsh_action(o.arg.kind)
        );
    }
    s.push_str("\n            ;;\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::table::command;

    /// The lines of a case branch `cmd)` of the bash script, up to its `;;`.
    fn bash_branch(script: &str, cmd: &str) -> Vec<String> {
        let head = format!("        {cmd})");
        script
            .lines()
            .skip_while(|l| *l != head)
            .skip(1)
            .take_while(|l| l.trim() != ";;")
            .map(|l| l.trim().to_string())
            .collect()
    }

    #[test]
    fn bash_offers_the_commands_then_each_command_its_options() {
        let s = bash();
        assert!(s.ends_with("complete -F _gscluster gscluster\n"));
        let top = bash_branch(&s, "\"\"");
        let all = COMMANDS
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            top.contains(&format!("_gscluster_words \"$cur\" \"{all}\"")),
            "{top:?}"
        );
        assert!(top.contains(&"_gscluster_words \"$cur\" \"--version --help\"".to_string()));
        for cmd in COMMANDS {
            let branch = bash_branch(&s, cmd.name);
            let names: Vec<&str> = cmd.options.iter().flat_map(|o| o.names).copied().collect();
            if !names.is_empty() {
                let offer = format!("_gscluster_words \"$cur\" \"{}\"", names.join(" "));
                assert_eq!(branch.last(), Some(&offer), "{}: {branch:?}", cmd.name);
            }
        }
    }

    #[test]
    fn bash_completes_files_after_a_file_option_and_for_a_bundle() {
        let s = bash();
        for cmd in [
            "run", "check", "status", "export", "import", "log", "show", "rollback",
        ] {
            let branch = bash_branch(&s, cmd);
            assert!(
                branch.contains(&"-c|--config) _gscluster_files \"$cur\"; return 0 ;;".into()),
                "{cmd}: {branch:?}"
            );
        }
        let export = bash_branch(&s, "export");
        assert!(export.contains(&"-o|--out) _gscluster_files \"$cur\"; return 0 ;;".into()));
        assert!(
            export.contains(&"--since) :; return 0 ;;".into()),
            "{export:?}"
        );
        let demo = bash_branch(&s, "demo");
        assert!(demo.contains(&"--dir) _gscluster_files \"$cur\" -d; return 0 ;;".into()));
        let import = bash_branch(&s, "import");
        assert!(import.contains(
            &"if [[ \"$cur\" != -* ]] && [ \"$operands\" -eq 0 ]; then _gscluster_files \"$cur\"; return 0; fi"
                .into()
        ), "{import:?}");
        let completions = bash_branch(&s, "completions");
        assert_eq!(
            completions,
            ["if [[ \"$cur\" != -* ]] && [ \"$operands\" -eq 0 ]; then _gscluster_words \"$cur\" \"bash zsh\"; return 0; fi"]
        );
        // Paths inside the data dir and change ids are not completed from here.
        assert!(!bash_branch(&s, "log").iter().any(|l| l.starts_with("if ")));
        assert!(!bash_branch(&s, "show").iter().any(|l| l.starts_with("if ")));
    }

    #[test]
    fn bash_skips_every_option_value_when_looking_for_the_command() {
        let s = bash();
        let skip = s
            .lines()
            .find(|l| l.ends_with(") i=$((i + 1)) ;;"))
            .unwrap();
        for opt in COMMANDS.iter().flat_map(|c| c.options) {
            for name in opt.names {
                let listed = skip
                    .trim()
                    .split(')')
                    .next()
                    .unwrap()
                    .split('|')
                    .any(|n| n == *name);
                assert_eq!(listed, opt.value.is_some(), "{name}: {skip}");
            }
        }
    }

    #[test]
    fn zsh_describes_the_commands_and_specifies_each_command_s_options() {
        let s = zsh();
        assert!(s.starts_with("#compdef gscluster\n"));
        for cmd in COMMANDS {
            assert!(
                s.contains(&format!("        '{}:{}'\n", cmd.name, quoted(cmd.help))),
                "{}",
                cmd.name
            );
            assert!(
                s.contains(&format!("        ({})\n", cmd.name)),
                "{}",
                cmd.name
            );
        }
        for spec in [
            "'(-c --config)-c[configuration file]:FILE:_files'",
            "'(-c --config)--config=[configuration file]:FILE:_files'",
            "'--json[stable JSON for scripts instead of the table]'",
            "'--max-lag-s=[lagging = behind an origin without progress for over S s (60)]:S: '",
            "':BUNDLE:_files'",
            "'*:PATH: '",
            "':CHANGE: '",
            "':SHELL:(bash zsh)'",
            "'--dir=[a new or empty folder for the demo'\\''s nodes (default: a temporary one)]:DIR:_files -/'",
        ] {
            assert!(s.contains(spec), "{spec}");
        }
        let status = &s[s.find("        (status)").unwrap()..];
        let status = &status[..status.find(";;").unwrap()];
        let opts = command("status").unwrap().options;
        assert_eq!(
            status.matches("\\\n").count(),
            1 + opts.iter().map(|o| o.names.len()).sum::<usize>()
        );
    }

    #[test]
    fn a_script_for_bash_and_zsh_only() {
        assert_eq!(script("bash"), Some(bash()));
        assert_eq!(script("zsh"), Some(zsh()));
        assert_eq!(script("fish"), None);
    }

    /// The packages ship the committed scripts: they must be what the binary prints.
    #[test]
    fn the_committed_scripts_of_the_packages_are_the_generated_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/completions");
        for (file, shell) in [("gscluster", "bash"), ("_gscluster", "zsh")] {
            let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                committed == script(shell).unwrap(),
                "packaging/completions/{file} is not what `gscluster completions {shell}` \
                 prints; write it again: cargo run -q -- completions {shell} > \
                 packaging/completions/{file}"
            );
        }
    }
}
