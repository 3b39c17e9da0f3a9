//! The chain of processes above this one, read from `/proc`.
//!
//! The shell function passes its shell's PID; the binary believes it only if that shell is
//! really one of its ancestors, and variables a shell inherited count as its own only if
//! the shell that reserved them is that shell or one of its ancestors (a nested shell),
//! not a stranger whose environment leaked in (a tmux server started from it).

/// More ancestors than any real process tree has; stops a loop in a corrupt view.
const MAX_DEPTH: usize = 512;

/// This process and its ancestors, nearest first, as far as `/proc` shows them.
#[derive(Clone, Debug)]
pub struct Ancestry(Vec<u32>);

impl Ancestry {
    pub fn of_this_process() -> Ancestry {
        Ancestry::walk(std::process::id(), parent_of)
    }

    pub fn walk(start: u32, parent: impl Fn(u32) -> Option<u32>) -> Ancestry {
        let mut chain = vec![start];
        let mut pid = start;
        while chain.len() < MAX_DEPTH {
            match parent(pid) {
                Some(next) if next != 0 && !chain.contains(&next) => {
                    chain.push(next);
                    pid = next;
                }
                _ => break,
            }
        }
        Ancestry(chain)
    }

    /// Whether `pid` is a proper ancestor of this process.
    pub fn has_ancestor(&self, pid: u32) -> bool {
        self.0[1..].contains(&pid)
    }

    /// Whether `holder` is `shell` itself or one of its ancestors, `shell` being an
    /// ancestor of this process.
    pub fn holder_is_shell_or_above(&self, shell: u32, holder: u32) -> bool {
        let position = |pid| self.0.iter().skip(1).position(|&p| p == pid);
        match (position(shell), position(holder)) {
            (Some(shell), Some(holder)) => holder >= shell,
            _ => false,
        }
    }
}

/// The parent of `pid`, as `/proc/<pid>/stat` says.
pub fn parent_of(pid: u32) -> Option<u32> {
    crate::process::ProcessFacts::read(pid).map(|facts| facts.parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_parent() {
        let me = std::process::id();
        assert!(parent_of(me).is_some());
    }

    #[test]
    fn ancestry_rules() {
        // 100 (binary) <- 90 (subshell) <- 80 (shell) <- 70 (parent shell) <- 1
        let parents = |pid| match pid {
            100 => Some(90),
            90 => Some(80),
            80 => Some(70),
            70 => Some(1),
            1 => Some(0),
            _ => None,
        };
        let chain = Ancestry::walk(100, parents);
        assert!(chain.has_ancestor(80));
        assert!(!chain.has_ancestor(100));
        assert!(!chain.has_ancestor(55));
        assert!(chain.holder_is_shell_or_above(80, 80));
        assert!(chain.holder_is_shell_or_above(80, 70));
        assert!(!chain.holder_is_shell_or_above(80, 90));
        assert!(!chain.holder_is_shell_or_above(80, 55));
        assert!(!chain.holder_is_shell_or_above(55, 70));
    }

    #[test]
    fn loops_end() {
        let chain = Ancestry::walk(5, |pid| Some(if pid == 5 { 6 } else { 5 }));
        assert_eq!(chain.0, vec![5, 6]);
    }

    #[test]
    fn real_chain_reaches_our_parent() {
        let chain = Ancestry::of_this_process();
        let parent = parent_of(std::process::id()).unwrap();
        assert!(chain.has_ancestor(parent));
    }
}
