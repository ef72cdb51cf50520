//! `<bin> completions <shell>` and `<bin> man`: shell completion scripts and a roff man page,
//! both generated from the binary's own clap definition so they never drift from its flags.
//! Written once here; a binary adds [`DocsCommand`] to its subcommands with
//! `#[command(flatten)]` and hands its `clap::Command` to [`DocsCommand::run`].
//!
//! The man page is one page per binary (what an operator installs as
//! `/usr/share/man/man1/<bin>.1`): the top-level NAME, SYNOPSIS, DESCRIPTION and OPTIONS, then a
//! COMMANDS section with one subsection per (nested) subcommand holding its synopsis,
//! description and own options. clap_mangen alone would only list `<bin>-<sub>(1)` references to
//! pages nobody installs.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{ArgAction, Subcommand};
pub use clap_complete::Shell;

/// The two subcommands every cairn binary has, flattened into its own `Command` enum.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum DocsCommand {
    /// Print a shell completion script to stdout (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff, section 1) to stdout
    Man,
}

impl DocsCommand {
    /// Prints what was asked for; 0 on success, 1 when stdout cannot be written (a closed pipe
    /// is not an error worth a message).
    pub fn run(&self, cmd: clap::Command) -> ExitCode {
        let name = cmd.get_name().to_string();
        let written = match self {
            DocsCommand::Completions { shell } => print_completions(cmd, *shell),
            DocsCommand::Man => print_man(cmd),
        };
        match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: error: writing to stdout: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Writes the completion script of `cmd` for `shell` to stdout.
pub fn print_completions(cmd: clap::Command, shell: Shell) -> std::io::Result<()> {
    let script = completions(cmd, shell);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()
}

/// The completion script of `cmd` for `shell`. Generated into memory: clap_complete panics on
/// a failed write, and stdout may be a closed pipe.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    script
}

/// Writes the man page of `cmd` (with every subcommand) to stdout.
pub fn print_man(cmd: clap::Command) -> std::io::Result<()> {
    let page = man_page(cmd)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)?;
    out.flush()
}

/// The roff man page of `cmd`, section 1, titled with the binary's name in capitals.
pub fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    // `help` as a subcommand is clap's; the page documents the real ones.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let title = cmd.get_name().to_uppercase();
    let man = clap_mangen::Man::new(cmd.clone()).title(title);
    let mut part = Vec::new();
    man.render_title(&mut part)?;
    man.render_name_section(&mut part)?;
    man.render_synopsis_section(&mut part)?;
    man.render_description_section(&mut part)?;
    man.render_options_section(&mut part)?;
    let mut page = Page::default();
    page.add(&part, str::to_string);
    let subs = visible_subcommands(&cmd);
    if !subs.is_empty() {
        page.line(".SH COMMANDS");
        let inherited = global_ids(&cmd, &[]);
        for sub in subs {
            render_subcommand(sub, &inherited, &mut page)?;
        }
    }
    if cmd.get_version().is_some() {
        let mut part = Vec::new();
        man.render_version_section(&mut part)?;
        page.add(&part, str::to_string);
    }
    Ok(page.text.into_bytes())
}

/// The page being assembled from clap_mangen's pieces. Each piece it renders carries the same
/// preamble (the two lines defining the `Aq` string); the page keeps it once, at the top.
#[derive(Default)]
struct Page {
    text: String,
    preamble_seen: bool,
}

impl Page {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// Appends a rendered piece, each line passed through `map`.
    fn add(&mut self, piece: &[u8], map: impl Fn(&str) -> String) {
        let piece = String::from_utf8_lossy(piece);
        for line in piece.lines() {
            if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
                if !self.preamble_seen {
                    self.line(line);
                    self.preamble_seen = line.starts_with(".el");
                }
                continue;
            }
            self.line(&map(line));
        }
    }
}

fn visible_subcommands(cmd: &clap::Command) -> Vec<&clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect()
}

/// `inherited` plus the ids of the global arguments `cmd` defines: what clap copies into every
/// subcommand below it, documented once where it is defined.
fn global_ids(cmd: &clap::Command, inherited: &[clap::Id]) -> Vec<clap::Id> {
    let mut ids = inherited.to_vec();
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        if !ids.contains(arg.get_id()) {
            ids.push(arg.get_id().clone());
        }
    }
    ids
}

/// One `.SS "<bin> <sub>"` subsection: synopsis, description, the subcommand's own options
/// (the global ones of its parents and help/version are documented once, at the top), then its
/// subcommands.
fn render_subcommand(
    sub: &clap::Command,
    inherited: &[clap::Id],
    page: &mut Page,
) -> std::io::Result<()> {
    let full_name = sub
        .get_bin_name()
        .unwrap_or_else(|| sub.get_name())
        .replace('"', "");
    page.line(&format!(".SS \"{full_name}\""));
    let own = sub.clone().mut_args(|a| {
        let inherited = inherited.contains(a.get_id())
            || matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            );
        if inherited { a.hide(true) } else { a }
    });
    let man = clap_mangen::Man::new(own);
    let mut part = Vec::new();
    man.render_synopsis_section(&mut part)?;
    man.render_description_section(&mut part)?;
    man.render_options_section(&mut part)?;
    // The sections of the subcommand's own page become paragraphs of its subsection.
    page.add(&part, |line| match line.strip_prefix(".SH ") {
        Some("SYNOPSIS" | "DESCRIPTION") => ".PP".to_string(),
        Some(heading) => format!(".PP\n.B {}", heading.trim_matches('"')),
        None => line.to_string(),
    });
    let inherited = global_ids(sub, inherited);
    for nested in visible_subcommands(sub) {
        render_subcommand(nested, &inherited, page)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn sample() -> Command {
        Command::new("demo")
            .version("1.2.3")
            .about("Does demo things")
            .arg(
                Arg::new("verbose")
                    .long("verbose")
                    .global(true)
                    .action(ArgAction::SetTrue)
                    .help("Say more"),
            )
            .subcommand(
                Command::new("serve")
                    .about("Run the server")
                    .arg(Arg::new("port").long("port").help("Port to listen on"))
                    .arg(
                        Arg::new("peer")
                            .long("peer")
                            .global(true)
                            .help("Peer of the server"),
                    ),
            )
            .subcommand(
                Command::new("kv")
                    .about("KV commands")
                    .subcommand(Command::new("get").about("Read a key").arg(Arg::new("key"))),
            )
            .subcommand(Command::new("wrap").hide(true))
    }

    #[test]
    fn man_page_has_every_visible_subcommand_once() {
        let page = String::from_utf8(man_page(sample()).unwrap()).unwrap();
        assert!(page.lines().any(|l| l.starts_with(".TH DEMO 1 ")), "{page}");
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble: {page}");
        assert!(page.contains(".SH COMMANDS"), "{page}");
        assert!(page.contains(".SS \"demo serve\""), "{page}");
        assert!(page.contains(".SS \"demo kv get\""), "{page}");
        assert!(page.contains("Port to listen on"), "{page}");
        assert!(!page.contains("wrap"), "hidden subcommand leaked: {page}");
        assert!(
            !page.contains("demo help"),
            "clap's help subcommand: {page}"
        );
        // The global flag is documented once, at the top.
        assert_eq!(page.matches("Say more").count(), 1, "{page}");
        // A global flag a subcommand defines is documented there (once).
        assert_eq!(page.matches("Peer of the server").count(), 1, "{page}");
        // One page: exactly one title and one NAME section.
        assert_eq!(page.matches(".TH ").count(), 1, "{page}");
        assert_eq!(page.matches(".SH NAME").count(), 1, "{page}");
    }

    #[test]
    fn completions_name_the_binary_and_its_subcommands() {
        let zsh = String::from_utf8(completions(sample(), Shell::Zsh)).unwrap();
        assert!(zsh.starts_with("#compdef demo"), "{zsh}");
        let bash = String::from_utf8(completions(sample(), Shell::Bash)).unwrap();
        assert!(bash.contains("serve") && bash.contains("kv"), "{bash}");
    }
}
