//! The REPL's `:` commands: their table (for `:help`, completion and "did you mean") and
//! the edit distance that suggests one when a command is misspelt.

/// One REPL command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// Its name, without the `:`.
    pub name: &'static str,
    /// What follows the name (empty when nothing does).
    pub args: &'static str,
    /// One line for the `:help` list.
    pub summary: &'static str,
    /// What `:help :NAME` adds to the summary.
    pub detail: &'static str,
}

/// Every command, in the order `:help` lists them.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "help",
        args: "[NAME]",
        summary: "this list; with NAME, the help of a function, builtin or command",
        detail: "`:help f` shows a function's signature as written and its `///` doc comment; \
                 `:help p.w` or `:help nn.linear` a field or module member; `:help sum` a builtin's parameters (`?` marks the optional ones) and what it \
                 does; `:help :time` a command. Tab completes names after `:help`.",
    },
    Command {
        name: "type",
        args: "EXPR",
        summary: "the checked type of an expression, with symbolic dims (nothing runs)",
        detail: "The expression is type-checked against the session's variables but not \
                 evaluated, so `:type train(big_data)` is instant and has no effects.",
    },
    Command {
        name: "vars",
        args: "",
        summary: "the variables defined so far and their types",
        detail: "Names starting with `_` (the last value `_` included) are left out.",
    },
    Command {
        name: "load",
        args: "FILE",
        summary: "run a file's statements in this session (its names stay defined)",
        detail: "The file is checked and run as one entry, as `ms FILE` would run it, but in \
                 this session: what it defines stays defined. Values are not echoed (as in a \
                 script); errors are shown against the file, under its name.",
    },
    Command {
        name: "reset",
        args: "",
        summary: "forget every variable: a fresh session with the same options",
        detail: "The new session has the seed and device the REPL started with; history is \
                 kept.",
    },
    Command {
        name: "time",
        args: "EXPR",
        summary: "evaluate, print the value and the wall time it took",
        detail: "The time covers checking and running the entry. An entry that takes less than \
                 0.1 s runs 5 times in all and the median is shown, because one run of a fast \
                 expression is mostly noise; the value shown and its output are the first \
                 run's (the repeats print nothing), but each repeat does run, so random draws \
                 advance the stream 5 times. A slower entry runs once.",
    },
    Command {
        name: "mode",
        args: "[eager|graph]",
        summary: "run named functions eagerly or staged (graph mode); without an argument, say which",
        detail: "In graph mode every named function called from the top level is staged into \
                 the IR on its first call with a signature and runs as a graph from then on, \
                 as `@jit` functions always do. Results are the same in both modes.",
    },
    Command {
        name: "device",
        args: "[cpu|cuda|cuda:N]",
        summary: "run on another device from now on; without an argument, say which",
        detail: "New values are made on the device and primitives run there. Values made \
                 before stay where they are and are moved when an operation needs them; \
                 `to(x, \"cpu\")` moves one explicitly and `device(x)` says where it is. \
                 `:reset` goes back to the device the REPL started with.",
    },
    Command {
        name: "ir",
        args: "NAME",
        summary: "the IR graphs staged so far for the function NAME",
        detail: "One graph per signature the function was called with (a `@jit` function, or \
                 any named function in graph mode). A function never called is staged at its \
                 annotated types (at two sizes when they name symbolic dims).",
    },
    Command {
        name: "passes",
        args: "NAME",
        summary: "the optimizer's passes on the function NAME, each as a diff of its IR",
        detail: "Stages NAME as `:ir` does, then runs the passes of the pipeline one after \
                 another and shows, for each, the lines of the IR it removed (-) and added (+). \
                 The last graph is the one that runs (`ms ir --stage opt`).",
    },
    Command {
        name: "plan",
        args: "NAME [PROFILE]",
        summary: "how the parallel function NAME is split over its mesh, and its estimated cost",
        detail: "For a `@jit(parallel: \"data\")` function that ran on more than one device: \
                 the layout of each input and primitive (`[m0, -]` splits axis 0 over the \
                 mesh), the collectives before each primitive with the bytes each device \
                 sends, and the estimated time of a call on the hardware profile PROFILE \
                 (cpu, the default, or h100). The same as `ms plan FILE --fn NAME`.",
    },
    Command {
        name: "explain",
        args: "[CODE]",
        summary: "what a diagnostic code means (E0301); without CODE, the list",
        detail: "The same text as `ms explain CODE`: the error, an example and the fix.",
    },
    Command {
        name: "quit",
        args: "",
        summary: "leave the REPL (Ctrl-D too; :q for short)",
        detail: "History is saved in ~/.mindscript_history when the REPL runs on a terminal.",
    },
];

/// The command called `name`, short forms (`:q`, `:h`) included.
pub fn find(name: &str) -> Option<&'static Command> {
    let name = match name {
        "q" => "quit",
        "h" => "help",
        other => other,
    };
    COMMANDS.iter().find(|c| c.name == name)
}

/// The command nearest to the misspelt `name`, when one is close enough to be what was
/// meant (at most a third of the letters differ, and at least one is the same).
pub fn suggest(name: &str) -> Option<&'static str> {
    let limit = (name.chars().count() / 3).max(1);
    COMMANDS
        .iter()
        .map(|c| (distance(name, c.name), c.name))
        .filter(|&(d, _)| d <= limit)
        .min()
        .map(|(_, n)| n)
        .or_else(|| {
            // A prefix (`:ti` for `:time`) is as good a guess as a typo.
            let mut starting = COMMANDS.iter().filter(|c| c.name.starts_with(name));
            match (starting.next(), starting.next()) {
                (Some(c), None) if !name.is_empty() => Some(c.name),
                _ => None,
            }
        })
}

/// The edit distance between `a` and `b` in characters: insertions, deletions,
/// substitutions and swaps of two neighbours (`tpye`) each count one.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: the distance between the first i characters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    if let Some(first) = d.first_mut() {
        for (j, cell) in first.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The `:help` text: every command, and how to get more help.
pub fn help_text() -> String {
    let mut out = String::from(
        "Enter MindScript statements; an unfinished line (an open bracket, a trailing \
         operator) continues on the next. `_` is the last value.\ncommands:\n",
    );
    for c in COMMANDS {
        let head = if c.args.is_empty() {
            format!(":{}", c.name)
        } else {
            format!(":{} {}", c.name, c.args)
        };
        out.push_str(&format!("  {head:<15} {}\n", c.summary));
    }
    out.push_str(
        "`:help NAME` explains a function, a builtin (`:help softmax`) or a command \
         (`:help :time`).\nOn a terminal: Tab completes names, fields and commands; → takes \
         the grey suggestion from history; Ctrl-C abandons the line; Ctrl-D leaves.\n",
    );
    out
}

/// The `:help :NAME` text of a command.
pub fn command_help(c: &Command) -> String {
    let head = if c.args.is_empty() {
        format!(":{}", c.name)
    } else {
        format!(":{} {}", c.name, c.args)
    };
    format!("{head}\n  {}\n  {}\n", c.summary, c.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("type", "type"), 0);
        assert_eq!(distance("tpye", "type"), 1);
        assert_eq!(distance("typ", "type"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn misspelt_commands_get_the_nearest_one() {
        assert_eq!(suggest("tyep"), Some("type"));
        assert_eq!(suggest("hlep"), Some("help"));
        assert_eq!(suggest("lod"), Some("load"));
        assert_eq!(suggest("rest"), Some("reset"));
        assert_eq!(suggest("exp"), Some("explain"));
        assert_eq!(suggest("frobnicate"), None);
    }

    #[test]
    fn short_forms_find_their_command() {
        assert_eq!(find("q").map(|c| c.name), Some("quit"));
        assert_eq!(find("h").map(|c| c.name), Some("help"));
        assert_eq!(find("time").map(|c| c.name), Some("time"));
        assert!(find("nope").is_none());
    }

    #[test]
    fn help_lists_every_command() {
        let text = help_text();
        for c in COMMANDS {
            assert!(text.contains(&format!(":{}", c.name)), "{text}");
        }
    }
}
