//! What `/proc/<pid>/stat` says about one process, read and parsed in one place: its
//! state, its parent and its start time. Liveness asks whether an owner still runs; the
//! shell integration walks the chain of parents.
//!
//! Read straight from `/proc` rather than through sysinfo: sysinfo gives start times in
//! whole seconds (pid reuse needs clock ticks) and costs several times more per look-up;
//! docs/DESIGN-NOTES.md has the numbers.

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessFacts {
    /// Field 3: R, S, D, T, Z (zombie), X (dead), ...
    pub state: char,
    /// Field 4.
    pub parent: u32,
    /// Field 22: start time in clock ticks since boot; with the pid, an identity that a
    /// reused pid does not share.
    pub start_ticks: u64,
}

impl ProcessFacts {
    /// The facts of `pid`, `None` when there is no such process (or /proc cannot say).
    pub fn read(pid: u32) -> Option<ProcessFacts> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ProcessFacts::parse(&stat)
    }

    /// The command name (field 2) may hold spaces and parentheses, so fields are
    /// counted after its last `)`.
    pub fn parse(stat: &str) -> Option<ProcessFacts> {
        let after_name = &stat[stat.rfind(')')? + 1..];
        let mut fields = after_name.split_whitespace();
        let state = single_char(fields.next()?)?;
        let parent = fields.next()?.parse().ok()?;
        // Fields 5 to 21 lie between the parent and the start time.
        let start_ticks = fields.nth(17)?.parse().ok()?;
        Some(ProcessFacts {
            state,
            parent,
            start_ticks,
        })
    }

    /// Whether the process has finished running: a zombie (killed or exited, not yet
    /// reaped by its parent) or one being torn down still has its /proc entry, with its
    /// pid and start time, but holds nothing any more.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn single_char(field: &str) -> Option<char> {
    let mut chars = field.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODD_NAME: &str =
        "123 (a) b (c) S 77 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";

    #[test]
    fn parsing_survives_odd_names() {
        let facts = ProcessFacts::parse(ODD_NAME).unwrap();
        assert_eq!(
            facts,
            ProcessFacts {
                state: 'S',
                parent: 77,
                start_ticks: 987654
            }
        );
        assert!(!facts.has_exited());
    }

    #[test]
    fn zombies_and_dead_processes_have_exited() {
        for (state, exited) in [("Z", true), ("X", true), ("x", true), ("D", false)] {
            let stat = ODD_NAME.replace(" S ", &format!(" {state} "));
            let facts = ProcessFacts::parse(&stat).unwrap();
            assert_eq!(facts.has_exited(), exited, "{state}");
        }
    }

    #[test]
    fn garbage_and_truncated_lines_are_no_facts() {
        assert_eq!(ProcessFacts::parse("garbage"), None);
        assert_eq!(ProcessFacts::parse("123 (a) S 77 123 123 0"), None);
        assert_eq!(ProcessFacts::parse(&ODD_NAME.replace(" S ", " SS ")), None);
    }

    #[test]
    fn this_process_is_running() {
        let facts = ProcessFacts::read(std::process::id()).unwrap();
        assert!(!facts.has_exited());
        assert!(facts.parent > 0);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,120}") {
            let _ = ProcessFacts::parse(&text);
        }
    }
}
