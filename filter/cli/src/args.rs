//! A small flag parser: `--name value` pairs (repeatable), `--name`
//! switches, and positional arguments. Unknown flags are errors.

use std::collections::{BTreeMap, BTreeSet};

/// Parsed arguments of one command.
#[derive(Debug, Default)]
pub struct Args {
    flags: BTreeMap<&'static str, Vec<String>>,
    switches: BTreeSet<&'static str>,
    /// Positional arguments, in order.
    pub positional: Vec<String>,
}

impl Args {
    /// Parses `args`; `flags` lists the accepted flag names (without `--`).
    pub fn parse(args: &[String], flags: &[&'static str]) -> Result<Self, String> {
        Self::parse_with_switches(args, flags, &[])
    }

    /// Like [`Args::parse`]; `switches` lists flags that take no value.
    pub fn parse_with_switches(
        args: &[String],
        flags: &[&'static str],
        switches: &[&'static str],
    ) -> Result<Self, String> {
        let mut out = Self::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                if let Some(&known) = switches.iter().find(|s| **s == name) {
                    out.switches.insert(known);
                    continue;
                }
                let Some(&known) = flags.iter().find(|f| **f == name) else {
                    return Err(format!("unknown option --{name}\n{}", super::USAGE));
                };
                let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                out.flags.entry(known).or_default().push(value.clone());
            } else {
                out.positional.push(arg.clone());
            }
        }
        Ok(out)
    }

    /// Whether a switch was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.contains(name)
    }

    /// Every value given for a flag.
    pub fn all(&self, name: &str) -> &[String] {
        self.flags.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The value of a flag given at most once.
    pub fn one(&self, name: &str) -> Result<Option<&str>, String> {
        match self.all(name) {
            [] => Ok(None),
            [v] => Ok(Some(v.as_str())),
            _ => Err(format!("--{name} may be given only once")),
        }
    }

    /// The value of a required flag given once.
    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.one(name)?
            .ok_or_else(|| format!("--{name} is required\n{}", super::USAGE))
    }
}
