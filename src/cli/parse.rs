//! Reading the command line against the table: options may come before or after the command,
//! in any order; each must be one of the command's (`table::COMMANDS`), with a value of its
//! kind; `--help` and `--version` are accepted anywhere and win. An error is one line for a
//! usage error (exit status 2).

use super::table::{self, Command, Kind, Opt};

/// What the arguments ask for.
#[derive(Debug)]
pub enum Action {
    Help,
    Version,
    Run(&'static Command),
}

/// The arguments, read and checked against the command's entry of the table.
#[derive(Debug)]
pub struct Parsed {
    pub action: Action,
    /// Each option given, in order, with its value.
    options: Vec<(&'static Opt, Option<String>)>,
    /// The words that are neither options nor their values, after the command's name.
    pub operands: Vec<String>,
}

impl Parsed {
    /// The command's name, `help` or `version`.
    pub fn command(&self) -> &'static str {
        match self.action {
            Action::Help => "help",
            Action::Version => "version",
            Action::Run(c) => c.name,
        }
    }

    /// Whether the option `long` (`--json`) was given.
    pub fn flag(&self, long: &str) -> bool {
        self.options.iter().any(|(o, _)| o.long() == long)
    }

    /// The value of the option `long` (`--config`); the last one when it was given twice.
    pub fn value(&self, long: &str) -> Option<&str> {
        let mut given = self.options.iter().rev();
        given
            .find(|(o, _)| o.long() == long)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The value of a number option (checked by `parse`).
    pub fn number(&self, long: &str) -> Option<u64> {
        self.value(long).and_then(|v| v.parse().ok())
    }
}

/// Read the arguments (without the program's name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut given: Vec<(String, Option<String>)> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let (mut help, mut version) = (false, false);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if !arg.starts_with('-') {
            words.push(arg);
            continue;
        }
        // `--config=FILE` as well as `--config FILE`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        let Some(takes_value) = table::takes_value(&name) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        if !takes_value && inline.is_some() {
            return Err(format!("{name} takes no value"));
        }
        match table::find(table::GLOBAL, &name).map(|o| o.long()) {
            Some("--help") => help = true,
            Some(_) => version = true,
            // A value missing at the end is named once the command tells its kind.
            None if takes_value => {
                given.push((name, inline.map(String::from).or_else(|| args.next())))
            }
            None => given.push((name, None)),
        }
    }
    let mut words = words.into_iter();
    let first = words.next();
    let command = match first.as_deref() {
        _ if help => None,
        _ if version => {
            return Ok(Parsed {
                action: Action::Version,
                options: Vec::new(),
                operands: Vec::new(),
            })
        }
        None | Some("help") => None,
        Some(name) => {
            Some(table::command(name).ok_or_else(|| format!("unknown command {name:?}"))?)
        }
    };
    let Some(command) = command else {
        return Ok(Parsed {
            action: Action::Help,
            options: Vec::new(),
            operands: Vec::new(),
        });
    };
    let mut options = Vec::new();
    for (name, value) in given {
        let opt = command
            .option(&name)
            .ok_or_else(|| format!("{name} is not an option of {}", command.name))?;
        if let Some(arg) = opt.value {
            let v = value.as_deref().ok_or_else(|| needs(&name, arg.kind))?;
            check(arg.kind, v).map_err(|()| needs(&name, arg.kind))?;
        }
        options.push((opt, value));
    }
    let operands: Vec<String> = words.collect();
    match &command.operands {
        None => {
            if let Some(extra) = operands.first() {
                return Err(format!("unexpected argument {extra:?}"));
            }
        }
        Some(o) => {
            if let (false, Some(extra)) = (o.many, operands.get(1)) {
                return Err(format!("unexpected argument {extra:?}"));
            }
            if o.required && operands.is_empty() {
                return Err(format!(
                    "{} needs {} ({})",
                    command.name,
                    o.arg.meta,
                    o.arg.kind.what()
                ));
            }
            for v in &operands {
                check(o.arg.kind, v).map_err(|()| {
                    format!(
                        "{}: {} is {}, not {v:?}",
                        command.name,
                        o.arg.meta,
                        o.arg.kind.what()
                    )
                })?;
            }
        }
    }
    for opt in command.options.iter().filter(|o| o.required) {
        if !options.iter().any(|(o, _)| std::ptr::eq(*o, opt)) {
            let meta = opt
                .value
                .map(|v| format!(" {}", v.meta))
                .unwrap_or_default();
            return Err(format!("{} needs {}{meta}", command.name, opt.long()));
        }
    }
    Ok(Parsed {
        action: Action::Run(command),
        options,
        operands,
    })
}

fn needs(name: &str, kind: Kind) -> String {
    format!("{name} needs {}", kind.what())
}

/// What the parser itself can check of a value: numbers and choices; the rest is the command's.
fn check(kind: Kind, value: &str) -> Result<(), ()> {
    let ok = match kind {
        Kind::Number => value.parse::<u64>().is_ok(),
        Kind::OneOf(words) => words.contains(&value),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &str) -> Result<Parsed, String> {
        parse(args.split_whitespace().map(String::from))
    }

    fn ok(args: &str) -> Parsed {
        parse_str(args).unwrap_or_else(|e| panic!("{args}: {e}"))
    }

    fn err(args: &str) -> String {
        match parse_str(args) {
            Ok(p) => panic!("{args}: accepted as {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_invocations_of_the_readme_the_docs_and_the_tests_are_accepted() {
        for args in [
            "run",
            "run -c /etc/gscluster/config.toml",
            "check --config=c.toml",
            "-c c.toml check",
            "status -c c.toml --json",
            "status --json -c c.toml --max-lag-s 5 --max-lag 2",
            "export -c c.toml --out a.bundle --since 1",
            "export -o a.bundle",
            "import -c c.toml --force --wait 5 a.bundle",
            "import a.bundle",
            "log --json --limit 0 -c c.toml",
            "log workspaces/topp --since 2d",
            "log --node gs-a --json --limit 0",
            "log --limit 0 workspaces/a workspaces/b -c c.toml",
            "show 1042 --diff",
            "show 1042 --diff -c c.toml",
            "rollback --to 1041 --dry-run",
            "rollback --to 2h workspaces/topp",
            "rollback --to 0 a/b.xml --dry-run --force -c c.toml",
            "completions bash",
            "completions zsh",
            "demo",
            "demo --keep --dir /tmp/d",
        ] {
            let p = ok(args);
            let name = args
                .split_whitespace()
                .find(|w| !w.starts_with('-') && !w.ends_with(".toml"));
            assert_eq!(Some(p.command()), name, "{args}");
        }
    }

    #[test]
    fn values_flags_and_operands_are_read() {
        let p = ok("status --json -c a.toml --max-lag-s 5 -c b.toml");
        assert!(p.flag("--json"));
        assert!(!p.flag("--max-lag"));
        assert_eq!(p.value("--config"), Some("b.toml"), "the last one");
        assert_eq!(p.number("--max-lag-s"), Some(5));
        assert_eq!(p.number("--max-lag"), None);
        let p = ok("export -o out.bundle --since 3");
        assert_eq!(p.value("--out"), Some("out.bundle"), "-o is --out");
        assert_eq!(p.number("--since"), Some(3));
        let p = ok("log --since 2d a b");
        assert_eq!(p.value("--since"), Some("2d"), "log's --since is a TIME");
        assert_eq!(p.operands, ["a", "b"]);
        let p = ok("--out=x.bundle export");
        assert_eq!(p.value("--out"), Some("x.bundle"));
    }

    #[test]
    fn an_option_of_another_command_is_a_usage_error_naming_both() {
        for (args, option, command) in [
            ("check --json", "--json", "check"),
            ("run --limit 5", "--limit", "run"),
            ("status --diff", "--diff", "status"),
            ("--force status", "--force", "status"),
            ("show 1 --since 2h", "--since", "show"),
            ("completions bash -c x", "-c", "completions"),
            ("demo -c x", "-c", "demo"),
            ("export --out b --keep", "--keep", "export"),
        ] {
            let e = err(args);
            assert!(e.contains(option) && e.contains(command), "{args}: {e}");
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, needle) in [
            ("check --frobnicate", "--frobnicate"),
            ("run -x", "-x"),
            ("check extra", "extra"),
            ("frobnicate", "unknown command \"frobnicate\""),
            ("check -c", "-c needs a file name"),
            (
                "status --max-lag-s soon",
                "--max-lag-s needs a whole number",
            ),
            ("export --out b --since two", "--since needs a whole number"),
            ("log --limit", "--limit needs a whole number"),
            ("log --node", "--node needs a node id"),
            ("rollback --to", "--to needs a change id or a time"),
            ("import a b", "\"b\""),
            ("show 1 2", "\"2\""),
            ("completions bash zsh", "\"zsh\""),
            ("completions fish", "SHELL is bash or zsh, not \"fish\""),
            ("completions", "completions needs SHELL (bash or zsh)"),
            ("import", "import needs BUNDLE"),
            ("show", "show needs CHANGE"),
            ("export", "export needs --out BUNDLE"),
            ("rollback a/b", "rollback needs --to CHANGE|TIME"),
            ("status --json=yes", "--json takes no value"),
        ] {
            let e = err(args);
            assert!(e.contains(needle), "{args}: {e}");
        }
    }

    #[test]
    fn help_and_version_win_anywhere_and_no_command_is_help() {
        for args in [
            "",
            "help",
            "--help",
            "-h",
            "status --help",
            "check --json -h",
            "-c x",
        ] {
            assert_eq!(ok(args).command(), "help", "{args:?}");
        }
        for args in ["--version", "-V", "run -V", "-c x --version"] {
            assert_eq!(ok(args).command(), "version", "{args:?}");
        }
        assert!(
            parse_str("--bogus --help").is_err(),
            "an unknown option is still named"
        );
    }
}
