//! Every command of `gscluster`, with its options and operands: what the parser accepts and what
//! the completion scripts offer. `USAGE` is the help text written for people; the tests below
//! keep the two in agreement (every command, option, alias, value and operand of the table is in
//! `USAGE`, and nothing else is).

/// What `gscluster --help` prints (and what follows a usage error).
pub const USAGE: &str = "\
gscluster — keeps a fleet of GeoServer instances configured identically

USAGE:
    gscluster run   [-c FILE]    run the daemon; its roles come from the config
    gscluster check [-c FILE]    validate config and data dir, list what would replicate
    gscluster status [-c FILE] [--json] [--max-lag-s S] [--max-lag N]
                                 every node of the group: online, role, version, published,
                                 outbox, applied and lag per origin, reloads, last error,
                                 keystore digest, drift; exit 1 when a node is offline or
                                 lagging or the keystores differ (a monitoring check)
    gscluster export [-c FILE] --out BUNDLE [--since N]
                                 air gap: write this node's replicated configuration (or
                                 what changed since export N) to one signed bundle file
    gscluster import [-c FILE] [--force] [--wait S] BUNDLE
                                 verify a bundle and apply it as one batch with one reload;
                                 on a master it then flows to the site's slaves
    gscluster log [-c FILE] [PATH...] [--since TIME] [--node ID] [--limit N] [--json]
                                 this node's history of the group's changes, newest first:
                                 change id, time, origin node, operation, path, object, size
    gscluster show [-c FILE] CHANGE [--diff]
                                 the files of one change; --diff: a unified diff of each
                                 against the version before it
    gscluster rollback [-c FILE] --to CHANGE|TIME [PATH...] [--dry-run] [--force]
                                 on a master: put the replicated tree (or the PATHs) back to
                                 what it was after change CHANGE or at TIME, published as a
                                 new change that every node applies with one reload
    gscluster completions SHELL  print the completion script for SHELL, bash or zsh (the
                                 packages install both)
    gscluster demo [--keep] [--dir DIR]
                                 a master and two slaves on loopback, nothing installed: shows
                                 a new layer, an edit and a delete reaching both slaves, then
                                 the status table, and removes what it made
    gscluster -V, --version      print the version
    gscluster -h, --help         print this help

OPTIONS:
    -c, --config FILE   configuration file (default: $GSCLUSTER_CONFIG, else /etc/gscluster/config.toml)
    --json              status: stable JSON for scripts instead of the table
    --max-lag-s S       status: lagging = behind an origin without progress for over S s (60)
    --max-lag N         status: lagging also = more than N deltas behind an origin
    -o, --out BUNDLE    export: the bundle file to write (mode 0600)
    --since N           export: only the changes since this node's export N (printed by
                        every export); default: the whole replicated tree
    --force             import: apply even a bundle out of sequence, one after which
                        catalog references would not resolve, or on a pure slave
    --wait S            import: how long to wait for a running daemon to apply it (600)
    --since TIME        log: only changes recorded since TIME
    --node ID           log: only changes made by node ID
    --limit N           log: at most N lines (50; 0: all)
    --json              log: one JSON object per line (id, time, origin, kind, op, path, ...)
    --diff              show: the changes as unified diffs
    --to CHANGE|TIME    rollback: the point, a change id from `log` or a TIME
    --dry-run           rollback: print what would change, write nothing
    --force             rollback: even when catalog references would not resolve after it
    --keep              demo: leave the cluster running for your own edits until Ctrl-C
    --dir DIR           demo: a new or empty folder for the demo's nodes (default: a temporary one)

TIME is RFC 3339 (2026-12-04T10:00:00Z) or an age (90s, 10m, 2h, 3d).

ENVIRONMENT:
    RUST_LOG            log filter, e.g. info (default), debug, gscluster=debug
    GSCLUSTER_CONFIG    configuration file when -c is not given

Exit status: 0 on success, 1 on a configuration or start-up problem (status: a problem in the
cluster; import: the bundle was refused or failed), 2 on bad usage, 3 when status cannot read
the cluster's status.
";

/// What an option's value or an operand is: how the parser checks it and how it is completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A file name: completed with the files here.
    File,
    /// A folder: completed with the folders here.
    Dir,
    /// A whole number (checked).
    Number,
    /// A TIME: RFC 3339 or an age (checked by the command).
    Time,
    /// A change id, as `log` prints it.
    Change,
    /// A change id or a TIME.
    ChangeOrTime,
    /// A node's id.
    NodeId,
    /// A free word, e.g. a path inside the data directory (not completed from here).
    Word,
    /// One of these words (checked, and completed).
    OneOf(&'static [&'static str]),
}

impl Kind {
    /// The value in words, for "-c needs a file name".
    pub fn what(self) -> String {
        match self {
            Kind::File => "a file name".into(),
            Kind::Dir => "a folder".into(),
            Kind::Number => "a whole number".into(),
            Kind::Time => "a time".into(),
            Kind::Change => "a change id".into(),
            Kind::ChangeOrTime => "a change id or a time".into(),
            Kind::NodeId => "a node id".into(),
            Kind::Word => "a value".into(),
            Kind::OneOf(words) => match words {
                [] => "nothing".into(),
                [one] => (*one).into(),
                [init @ .., last] => format!("{} or {last}", init.join(", ")),
            },
        }
    }
}

/// An option's value or an operand: its placeholder in `USAGE` and its kind.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub meta: &'static str,
    pub kind: Kind,
}

/// One option of a command.
#[derive(Debug)]
pub struct Opt {
    /// Its names, the short one (if any) first; the last is the long one.
    pub names: &'static [&'static str],
    /// The value it takes, if any.
    pub value: Option<Arg>,
    /// The command cannot do without it.
    pub required: bool,
    /// One line, without `[`, `]` or `\` (zsh's completion shows it in `[...]`).
    pub help: &'static str,
}

impl Opt {
    /// The long name (`--config`): how the code asks for an option.
    pub fn long(&self) -> &'static str {
        self.names[self.names.len() - 1]
    }
}

/// The words after a command that are no option and no option's value.
#[derive(Debug)]
pub struct Operands {
    pub arg: Arg,
    /// Any number of them (`PATH...`), else at most one.
    pub many: bool,
    /// At least one.
    pub required: bool,
}

/// One command: `gscluster NAME ...`.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    /// One line, without `[`, `]` or `\`.
    pub help: &'static str,
    pub options: &'static [Opt],
    pub operands: Option<Operands>,
}

impl Command {
    /// Its option called `name` (any of its names).
    pub fn option(&self, name: &str) -> Option<&'static Opt> {
        find(self.options, name)
    }
}

/// The option of `options` called `name`.
pub fn find(options: &'static [Opt], name: &str) -> Option<&'static Opt> {
    options.iter().find(|o| o.names.contains(&name))
}

const fn flag(names: &'static [&'static str], help: &'static str) -> Opt {
    Opt {
        names,
        value: None,
        required: false,
        help,
    }
}

const fn valued(
    names: &'static [&'static str],
    meta: &'static str,
    kind: Kind,
    help: &'static str,
) -> Opt {
    Opt {
        names,
        value: Some(Arg { meta, kind }),
        required: false,
        help,
    }
}

const fn required(mut opt: Opt) -> Opt {
    opt.required = true;
    opt
}

const fn operands(meta: &'static str, kind: Kind, many: bool, required: bool) -> Option<Operands> {
    Some(Operands {
        arg: Arg { meta, kind },
        many,
        required,
    })
}

const CONFIG: Opt = valued(
    &["-c", "--config"],
    "FILE",
    Kind::File,
    "configuration file",
);

/// The shells `gscluster completions` writes a script for.
pub const SHELLS: &[&str] = &["bash", "zsh"];

/// Every command, in the order of `USAGE`.
pub static COMMANDS: &[Command] = &[
    Command {
        name: "run",
        help: "run the daemon; its roles come from the config",
        options: &[CONFIG],
        operands: None,
    },
    Command {
        name: "check",
        help: "validate config and data dir, list what would replicate",
        options: &[CONFIG],
        operands: None,
    },
    Command {
        name: "status",
        help: "every node of the group; exit 1 when one is offline or lagging",
        options: &[
            CONFIG,
            flag(&["--json"], "stable JSON for scripts instead of the table"),
            valued(
                &["--max-lag-s"],
                "S",
                Kind::Number,
                "lagging = behind an origin without progress for over S s (60)",
            ),
            valued(
                &["--max-lag"],
                "N",
                Kind::Number,
                "lagging also = more than N deltas behind an origin",
            ),
        ],
        operands: None,
    },
    Command {
        name: "export",
        help: "air gap: write this node's replicated configuration to a bundle file",
        options: &[
            CONFIG,
            required(valued(
                &["-o", "--out"],
                "BUNDLE",
                Kind::File,
                "the bundle file to write (mode 0600)",
            )),
            valued(
                &["--since"],
                "N",
                Kind::Number,
                "only the changes since this node's export N",
            ),
        ],
        operands: None,
    },
    Command {
        name: "import",
        help: "verify a bundle and apply it as one batch with one reload",
        options: &[
            CONFIG,
            flag(
                &["--force"],
                "apply even a bundle out of sequence, with unresolved references, on a pure slave",
            ),
            valued(
                &["--wait"],
                "S",
                Kind::Number,
                "how long to wait for a running daemon to apply it (600)",
            ),
        ],
        operands: operands("BUNDLE", Kind::File, false, true),
    },
    Command {
        name: "log",
        help: "this node's history of the group's changes, newest first",
        options: &[
            CONFIG,
            valued(
                &["--since"],
                "TIME",
                Kind::Time,
                "only changes recorded since TIME",
            ),
            valued(
                &["--node"],
                "ID",
                Kind::NodeId,
                "only changes made by node ID",
            ),
            valued(
                &["--limit"],
                "N",
                Kind::Number,
                "at most N lines (50, 0 for all)",
            ),
            flag(&["--json"], "one JSON object per line"),
        ],
        operands: operands("PATH", Kind::Word, true, false),
    },
    Command {
        name: "show",
        help: "the files of one change",
        options: &[CONFIG, flag(&["--diff"], "the changes as unified diffs")],
        operands: operands("CHANGE", Kind::Change, false, true),
    },
    Command {
        name: "rollback",
        help: "on a master: put the replicated tree back to a change or a time",
        options: &[
            CONFIG,
            required(valued(
                &["--to"],
                "CHANGE|TIME",
                Kind::ChangeOrTime,
                "the point, a change id from log or a TIME",
            )),
            flag(&["--dry-run"], "print what would change, write nothing"),
            flag(
                &["--force"],
                "even when catalog references would not resolve after it",
            ),
        ],
        operands: operands("PATH", Kind::Word, true, false),
    },
    Command {
        name: "completions",
        help: "print the completion script for bash or zsh",
        options: &[],
        operands: operands("SHELL", Kind::OneOf(SHELLS), false, true),
    },
    Command {
        name: "demo",
        help: "a master and two slaves on loopback, showing changes reach both",
        options: &[
            flag(
                &["--keep"],
                "leave the cluster running for your own edits until Ctrl-C",
            ),
            valued(
                &["--dir"],
                "DIR",
                Kind::Dir,
                "a new or empty folder for the demo's nodes (default: a temporary one)",
            ),
        ],
        operands: None,
    },
];

/// The options that stand for a command of their own, given anywhere.
pub static GLOBAL: &[Opt] = &[
    flag(&["-V", "--version"], "print the version"),
    flag(&["-h", "--help"], "print the help"),
];

/// The command called `name`.
pub fn command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Whether an option of this name takes a value (the same in every command that has it, which
/// a test keeps so); `None`: no command has it.
pub fn takes_value(name: &str) -> Option<bool> {
    let mut all = COMMANDS.iter().flat_map(|c| c.options).chain(GLOBAL);
    all.find(|o| o.names.contains(&name))
        .map(|o| o.value.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The lines of `USAGE` between `title` and the next blank line.
    fn section(title: &str) -> Vec<&'static str> {
        USAGE
            .lines()
            .skip_while(|l| *l != title)
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect()
    }

    /// The words of a synopsis line of `USAGE`, `gscluster NAME ...`, without its description
    /// (which starts with the first word that is no option, placeholder or bracketed item).
    fn synopsis(line: &str) -> Option<Vec<&str>> {
        let rest = line.strip_prefix("    gscluster ")?;
        let mut words = rest.split_whitespace();
        let mut out = vec![words.next()?];
        let mut in_brackets = false;
        for w in words {
            let placeholder = w
                .chars()
                .all(|c| c.is_ascii_uppercase() || "|.]".contains(c));
            if !(in_brackets || w.starts_with('-') || w.starts_with('[') || placeholder) {
                break;
            }
            in_brackets = (in_brackets || w.starts_with('[')) && !w.ends_with(']');
            out.push(w);
        }
        Some(out)
    }

    /// A synopsis's items: `[-c FILE]` is (optional, ["-c", "FILE"]); an option taking a value
    /// goes with the word after it; anything else is one item.
    fn items(words: &[&str]) -> Vec<(bool, Vec<String>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < words.len() {
            if words[i].starts_with('[') {
                let mut group = Vec::new();
                loop {
                    let w = words[i];
                    group.push(w.trim_start_matches('[').trim_end_matches(']').to_string());
                    i += 1;
                    if w.ends_with(']') {
                        break;
                    }
                }
                out.push((true, group));
            } else if words[i].starts_with('-') && takes_value(words[i]) == Some(true) {
                out.push((false, vec![words[i].into(), words[i + 1].into()]));
                i += 2;
            } else {
                out.push((false, vec![words[i].into()]));
                i += 1;
            }
        }
        out
    }

    #[test]
    fn usage_lists_the_commands_of_the_table_in_its_order_and_each_with_its_options_and_operands() {
        let lines = section("USAGE:");
        let synopses: Vec<Vec<&str>> = lines.iter().filter_map(|l| synopsis(l)).collect();
        let named: Vec<&str> = synopses
            .iter()
            .map(|s| s[0])
            .filter(|w| !w.starts_with('-'))
            .collect();
        let table: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(named, table, "the commands of USAGE and of the table");
        for words in &synopses {
            let s = words.join(" ");
            if words[0].starts_with('-') {
                continue;
            }
            let cmd = command(words[0]).unwrap();
            let mut seen = BTreeSet::new();
            let mut operands = None;
            for (optional, item) in items(&words[1..]) {
                if item[0].starts_with('-') {
                    let opt = cmd.option(&item[0]).unwrap_or_else(|| {
                        panic!("USAGE: {} {}: not in the table", cmd.name, item[0])
                    });
                    let meta = opt.value.map(|v| v.meta);
                    assert_eq!(item.get(1).map(|m| m.as_str()), meta, "{s}: {}", item[0]);
                    assert_eq!(opt.required, !optional, "{s}: {} required?", item[0]);
                    assert!(seen.insert(opt.long()), "{s}: {} twice", item[0]);
                } else {
                    assert_eq!(item.len(), 1, "{s}: {item:?}");
                    let (meta, many) = match item[0].strip_suffix("...") {
                        Some(m) => (m, true),
                        None => (item[0].as_str(), false),
                    };
                    let o = cmd.operands.as_ref().unwrap_or_else(|| {
                        panic!("USAGE: {} {meta}: the table has no operand", cmd.name)
                    });
                    assert_eq!((o.arg.meta, o.many), (meta, many), "{s}");
                    assert_eq!(o.required, !optional, "{s}: {meta} required?");
                    assert!(operands.replace(o.arg.meta).is_none(), "{s}: two operands");
                }
            }
            let table: BTreeSet<&str> = cmd.options.iter().map(|o| o.long()).collect();
            assert_eq!(seen, table, "{s}: the options of USAGE and of the table");
            assert_eq!(operands.is_some(), cmd.operands.is_some(), "{s}: operands");
        }
    }

    #[test]
    fn usage_shows_the_global_options_as_commands_of_their_own() {
        let lines = section("USAGE:");
        let mut shown: Vec<Vec<&str>> = lines
            .iter()
            .filter_map(|l| synopsis(l))
            .filter(|s| s[0].starts_with('-'))
            .map(|s| s.iter().map(|w| w.trim_end_matches(',')).collect())
            .collect();
        shown.sort();
        let mut table: Vec<Vec<&str>> = GLOBAL.iter().map(|o| o.names.to_vec()).collect();
        table.sort();
        assert_eq!(shown, table);
    }

    /// An OPTIONS line: (names, its value's placeholder, the command it is for; `None`: every
    /// command that has it).
    fn option_line(line: &str) -> Option<(Vec<&str>, Option<&str>, Option<&str>)> {
        let rest = line.strip_prefix("    -")?;
        let (head, help) = line[line.len() - rest.len() - 1..].split_once("  ")?;
        let mut words: Vec<&str> = head.split_whitespace().collect();
        let meta = match words.last() {
            Some(w) if !w.starts_with('-') => words.pop(),
            _ => None,
        };
        let names = words.iter().map(|w| w.trim_end_matches(',')).collect();
        let help = help.trim_start();
        let for_command = help
            .split_once(": ")
            .map(|(c, _)| c)
            .filter(|c| command(c).is_some());
        Some((names, meta, for_command))
    }

    #[test]
    fn usage_explains_every_option_of_every_command_and_no_other() {
        let lines: Vec<_> = section("OPTIONS:")
            .into_iter()
            .filter_map(option_line)
            .collect();
        let mut explained = BTreeSet::new();
        for (names, meta, for_command) in &lines {
            let commands: Vec<&Command> = match for_command {
                Some(c) => vec![command(c).unwrap()],
                None => COMMANDS
                    .iter()
                    .filter(|c| c.option(names[0]).is_some())
                    .collect(),
            };
            assert!(
                !commands.is_empty(),
                "USAGE explains {names:?}: no command has it"
            );
            for cmd in commands {
                let opt = cmd.option(names[0]).unwrap_or_else(|| {
                    panic!("USAGE: {names:?} for {}: not in the table", cmd.name)
                });
                assert_eq!(opt.names, names.as_slice(), "{}: names", cmd.name);
                assert_eq!(opt.value.map(|v| v.meta), *meta, "{}: {names:?}", cmd.name);
                explained.insert((cmd.name, opt.long()));
            }
        }
        let table: BTreeSet<_> = COMMANDS
            .iter()
            .flat_map(|c| c.options.iter().map(move |o| (c.name, o.long())))
            .collect();
        assert_eq!(
            explained, table,
            "the options USAGE explains and the table's"
        );
    }

    #[test]
    fn an_option_takes_a_value_in_every_command_that_has_it_or_in_none() {
        let all = COMMANDS.iter().flat_map(|c| c.options).chain(GLOBAL);
        for opt in all {
            for name in opt.names {
                assert_eq!(takes_value(name), Some(opt.value.is_some()), "{name}");
            }
        }
    }

    #[test]
    fn names_are_well_formed_and_helps_plain_single_lines() {
        let all = COMMANDS.iter().flat_map(|c| c.options).chain(GLOBAL);
        for opt in all {
            assert!(
                opt.long().starts_with("--") && opt.long().len() > 3,
                "{opt:?}"
            );
            for name in opt.names {
                let bare = name.trim_start_matches('-');
                assert!(
                    !bare.is_empty() && bare.chars().all(|c| c.is_ascii_alphabetic() || c == '-'),
                    "{name}"
                );
            }
        }
        let helps = COMMANDS
            .iter()
            .flat_map(|c| c.options)
            .chain(GLOBAL)
            .map(|o| o.help)
            .chain(COMMANDS.iter().map(|c| c.help));
        for help in helps {
            // The completion scripts quote them for zsh's '...[HELP]...' but for these.
            assert!(
                !help.is_empty() && !help.contains(['\n', '[', ']', '\\']),
                "{help:?}"
            );
        }
        for cmd in COMMANDS {
            assert!(
                cmd.name.chars().all(|c| c.is_ascii_lowercase()),
                "{}",
                cmd.name
            );
        }
    }

    #[test]
    fn a_choice_reads_as_words() {
        assert_eq!(Kind::OneOf(SHELLS).what(), "bash or zsh");
        assert_eq!(Kind::OneOf(&["a", "b", "c"]).what(), "a, b or c");
        assert_eq!(Kind::File.what(), "a file name");
    }
}
