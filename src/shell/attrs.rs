//! What a shell says about its own copies of the variables the integration manages.
//!
//! The binary only sees exported variables, and nothing of their attributes. So the
//! function from `init` describes each managed variable in `_CANHAZGPU_ATTRS` (and
//! passes the values of unexported ones in the binary's environment only): whether it
//! is exported, and whatever would make assigning a device list to it fail or mean
//! something else (`readonly`, `declare -i`, an array, a name reference, case
//! conversion). Each shell reports this in its own words; this module reads them.
//! Everything here is pure.

use std::collections::BTreeMap;

use super::Shell;

/// The variable the shell function fills: `NAME=ATTRS` entries separated by spaces.
pub const ATTRS_VAR: &str = "_CANHAZGPU_ATTRS";

/// One variable as the shell described it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Described {
    pub exported: bool,
    /// fish: the variable exists only in the universal scope (`set -U`), so the global
    /// the integration sets shadows it and must be erased, not overwritten, afterwards.
    pub universal: bool,
    pub problem: Option<Problem>,
}

/// Why the integration cannot assign a device list to a variable as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    ReadOnly,
    /// Arithmetic: `export CUDA_VISIBLE_DEVICES=0,1` would store 1 (the comma operator).
    Numeric,
    /// An array, an associative array or a fish list of several elements.
    NotScalar,
    /// A name reference: the assignment would change another variable.
    NameRef,
    /// Case conversion or padding would change the value (a GPU UUID's case, say).
    Transformed,
}

impl Problem {
    /// What the variable is, as its shell would say it.
    pub fn describe(self, shell: Shell) -> &'static str {
        match (self, shell) {
            (Problem::ReadOnly, Shell::Zsh) => "read-only (typeset -r)",
            (Problem::ReadOnly, _) => "read-only (readonly)",
            (Problem::Numeric, Shell::Zsh) => "numeric (integer or float)",
            (Problem::Numeric, _) => "an integer variable (declare -i)",
            (Problem::NotScalar, Shell::Fish) => "a list of several elements",
            (Problem::NotScalar, _) => "an array",
            (Problem::NameRef, _) => "a name reference (declare -n)",
            (Problem::Transformed, _) => "a variable that converts or pads its value",
        }
    }

    /// How to make it usable again, in its shell.
    pub fn remedy(self, shell: Shell, name: &str) -> String {
        match (self, shell) {
            (Problem::ReadOnly, Shell::Bash) => {
                "a read-only variable stays so for the life of the shell: start a new shell \
                 without it"
                    .to_string()
            }
            (Problem::ReadOnly, _) => format!("`typeset +r {name}`, or start a new shell"),
            (Problem::NameRef, _) => format!("`unset -n {name}`"),
            (Problem::NotScalar, Shell::Fish) => format!("`set {name} (string join , ${name})`"),
            (_, Shell::Zsh) => format!("`unset {name}` or `typeset +iEFluLRZ {name}`"),
            (_, _) => format!("`unset {name}` or `declare +iluc {name}`"),
        }
    }
}

/// Reads `_CANHAZGPU_ATTRS` as `shell` wrote it.
pub fn parse(shell: Shell, text: &str) -> BTreeMap<String, Described> {
    text.split_whitespace()
        .filter_map(|entry| entry.split_once('='))
        .map(|(name, attrs)| {
            let described = match shell {
                Shell::Bash => bash(attrs),
                Shell::Zsh => zsh(attrs),
                Shell::Fish => fish(attrs),
            };
            (name.to_string(), described)
        })
        .collect()
}

/// `${NAME@a}` letters, plus `R` for a name reference (which `@a` looks through).
fn bash(attrs: &str) -> Described {
    let problem = attrs.chars().find_map(|c| match c {
        'r' => Some(Problem::ReadOnly),
        'i' => Some(Problem::Numeric),
        'a' | 'A' => Some(Problem::NotScalar),
        'n' | 'R' => Some(Problem::NameRef),
        'l' | 'u' | 'c' => Some(Problem::Transformed),
        _ => None,
    });
    Described {
        exported: attrs.contains('x'),
        universal: false,
        problem,
    }
}

/// `${(t)NAME}`: the type, then `-`-separated flags, e.g. `scalar-readonly-export`.
fn zsh(attrs: &str) -> Described {
    let mut words = attrs.split('-');
    let kind = words.next().unwrap_or_default();
    let flags: Vec<&str> = words.collect();
    let transformed = |flag: &&str| {
        matches!(
            *flag,
            "lower" | "upper" | "left" | "right_blanks" | "right_zeros" | "tied"
        )
    };
    let problem = match kind {
        // A readonly flag wins over the others: it is the one nothing but a new shell fixes.
        _ if flags.contains(&"readonly") => Some(Problem::ReadOnly),
        "integer" | "float" => Some(Problem::Numeric),
        "array" | "association" => Some(Problem::NotScalar),
        _ => flags
            .iter()
            .any(transformed)
            .then_some(Problem::Transformed),
    };
    Described {
        exported: flags.contains(&"export"),
        universal: false,
        problem,
    }
}

/// Letters the fish function computes: `x` exported, `U` only universal, `a` a list
/// of several elements.
fn fish(attrs: &str) -> Described {
    Described {
        exported: attrs.contains('x'),
        universal: attrs.contains('U'),
        problem: attrs.contains('a').then_some(Problem::NotScalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(shell: Shell, text: &str) -> Described {
        let parsed = parse(shell, text);
        assert_eq!(parsed.len(), 1, "{text}");
        parsed.into_values().next().unwrap()
    }

    #[test]
    fn bash_attributes() {
        let plain = one(Shell::Bash, "X=");
        assert_eq!(plain, Described::default());
        assert!(one(Shell::Bash, "X=x").exported);
        assert_eq!(one(Shell::Bash, "X=rx").problem, Some(Problem::ReadOnly));
        assert_eq!(one(Shell::Bash, "X=i").problem, Some(Problem::Numeric));
        assert_eq!(one(Shell::Bash, "X=a").problem, Some(Problem::NotScalar));
        assert_eq!(one(Shell::Bash, "X=xR").problem, Some(Problem::NameRef));
        assert_eq!(one(Shell::Bash, "X=u").problem, Some(Problem::Transformed));
        assert_eq!(one(Shell::Bash, "X=tx").problem, None);
        let many = parse(Shell::Bash, "A=x B= C=r junk ");
        assert_eq!(many.len(), 3);
        assert!(!many["B"].exported);
    }

    #[test]
    fn zsh_types() {
        assert_eq!(one(Shell::Zsh, "X=scalar"), Described::default());
        assert!(one(Shell::Zsh, "X=scalar-export").exported);
        assert_eq!(
            one(Shell::Zsh, "X=scalar-readonly-export").problem,
            Some(Problem::ReadOnly)
        );
        assert_eq!(
            one(Shell::Zsh, "X=integer-readonly").problem,
            Some(Problem::ReadOnly)
        );
        assert_eq!(one(Shell::Zsh, "X=integer").problem, Some(Problem::Numeric));
        assert_eq!(
            one(Shell::Zsh, "X=float-export").problem,
            Some(Problem::Numeric)
        );
        assert_eq!(one(Shell::Zsh, "X=array").problem, Some(Problem::NotScalar));
        assert_eq!(
            one(Shell::Zsh, "X=scalar-upper").problem,
            Some(Problem::Transformed)
        );
        assert_eq!(one(Shell::Zsh, "X=scalar-local-tag").problem, None);
        // Unset: nothing at all.
        assert_eq!(one(Shell::Zsh, "X="), Described::default());
    }

    #[test]
    fn fish_letters() {
        assert_eq!(one(Shell::Fish, "X="), Described::default());
        let universal = one(Shell::Fish, "X=xU");
        assert!(universal.exported && universal.universal);
        assert_eq!(one(Shell::Fish, "X=a").problem, Some(Problem::NotScalar));
    }
}
