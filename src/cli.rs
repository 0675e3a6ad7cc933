//! The command line (clap): `serve` (the default), `chat`, `check-config`, and the commands that
//! work on a stopped store (`members`, `export`, `import`, `import-balances`). Each subcommand
//! has its own `--help`; `--config` and `LOYALTY_CONFIG` name the operator's file for all.

use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

/// The file read when neither `--config` nor `LOYALTY_CONFIG` names one; absent is fine.
pub const DEFAULT_CONFIG: &str = "config.toml";

#[derive(Debug, Parser)]
#[command(
    name = "loyalty-bot",
    version,
    about = "A self-hosted customer-loyalty engine for Facebook Messenger and ManyChat",
    long_about = "A self-hosted customer-loyalty engine for Facebook Messenger and ManyChat.\n\n\
        Settings come in three layers: built-in defaults, then the config file, then \
        LOYALTY__<SECTION>__<KEY> environment variables (for example \
        LOYALTY__PROGRAM__SIGNUP_BONUS=75). `check-config` shows the result.\n\n\
        With no command, `serve` runs."
)]
pub struct Cli {
    /// The operator's config file (any subset of keys). Default: ./config.toml if it exists,
    /// else the built-in defaults alone.
    #[arg(long, global = true, env = "LOYALTY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Talk to the bot in this terminal, as a customer would in Messenger (the store must not
    /// be in use by a running `serve`).
    Chat {
        /// Who you are in the conversation.
        #[arg(long = "as", value_name = "ID", default_value = "owner")]
        id: String,
    },
    /// Print the effective configuration (secrets as [redacted]) and the layer each value came
    /// from; exit 0 if it is valid, 1 if not.
    CheckConfig,
    /// List the members of a segment from a stopped store (`GET /admin/members` while the
    /// service runs).
    Members(MembersArgs),
    /// Write the whole store as NDJSON, with the service stopped (`GET /admin/export` while it
    /// runs).
    Export {
        /// Where to write; `-` for standard output.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Load an export into an empty store (a store holding anything is refused).
    Import {
        /// The export file (from `export` or `GET /admin/export`).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Bring balances over from another loyalty app or a spreadsheet: a CSV file with the
    /// columns `email,points` and optionally `joined_at`. Each balance waits for its email to
    /// join and is added to the signup bonus; running a file twice imports nothing twice.
    ImportBalances {
        /// The CSV file (with a header row).
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
    },
    /// Member email from a stopped store: with --dry-run, print what is due (or one member's
    /// statement) without sending or recording anything; without it, send what is due now,
    /// once, as the running service would.
    Statements(StatementsArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct StatementsArgs {
    /// Print instead of sending; the store is not changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this member: their statement, whether it is due or not.
    #[arg(long, value_name = "EMAIL")]
    pub member: Option<String>,
    /// As if it were this RFC 3339 date or time (`2027-01-31`), e.g. to see next month's run.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
}

/// The filters of a segment; all given ones apply together.
#[derive(Debug, Clone, Default, Args)]
pub struct MembersArgs {
    /// At least this many points.
    #[arg(long, value_name = "N")]
    pub min_points: Option<String>,
    /// At most this many points.
    #[arg(long, value_name = "N")]
    pub max_points: Option<String>,
    /// Members who can afford this reward now.
    #[arg(long, value_name = "REWARD_ID")]
    pub can_redeem: Option<String>,
    /// No ledger entry for this many days.
    #[arg(long, value_name = "N")]
    pub inactive_days: Option<String>,
    /// Joined after this RFC 3339 date or time.
    #[arg(long, value_name = "DATE")]
    pub joined_after: Option<String>,
    /// Joined before this RFC 3339 date or time.
    #[arg(long, value_name = "DATE")]
    pub joined_before: Option<String>,
    /// Reached through this channel (messenger or manychat).
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// With this language (en, de).
    #[arg(long, value_name = "LOCALE")]
    pub locale: Option<String>,
    /// CSV with a header row (the columns of `GET /admin/members?format=csv`). Without it: a
    /// table on a terminal, one JSON object per line when piped.
    #[arg(long)]
    pub csv: bool,
}

impl MembersArgs {
    /// The filters as `GET /admin/members` query pairs, so both parse them the same way.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        [
            ("min_points", &self.min_points),
            ("max_points", &self.max_points),
            ("can_redeem", &self.can_redeem),
            ("inactive_days", &self.inactive_days),
            ("joined_after", &self.joined_after),
            ("joined_before", &self.joined_before),
            ("channel", &self.channel),
            ("locale", &self.locale),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), v)))
        .collect()
    }
}

impl Cli {
    /// The config file to read: the one named, else `./config.toml` if it exists, else none.
    pub fn config_file(&self) -> Option<PathBuf> {
        match &self.config {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| Path::new(p).exists()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loyalty-bot").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_serves_and_config_goes_anywhere() {
        let cli = parse("").unwrap();
        assert!(cli.command.is_none());
        let cli = parse("--config /etc/l.toml").unwrap();
        assert_eq!(cli.config_file(), Some(PathBuf::from("/etc/l.toml")));
        let cli = parse("serve --config x.toml").unwrap();
        assert!(matches!(cli.command, Some(Command::Serve)));
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn chat_takes_an_identity() {
        let Some(Command::Chat { id }) = parse("chat").unwrap().command else {
            panic!("chat")
        };
        assert_eq!(id, "owner");
        let Some(Command::Chat { id }) = parse("chat --as ana").unwrap().command else {
            panic!("chat --as")
        };
        assert_eq!(id, "ana");
    }

    #[test]
    fn members_filters_become_the_admin_apis_query() {
        let cli = parse("members --min-points 100 --channel messenger --csv").unwrap();
        let Some(Command::Members(args)) = cli.command else {
            panic!("members")
        };
        assert!(args.csv);
        assert_eq!(
            args.query_pairs(),
            vec![
                ("min_points".to_owned(), "100".to_owned()),
                ("channel".to_owned(), "messenger".to_owned())
            ]
        );
    }

    #[test]
    fn mistakes_are_refused() {
        assert!(parse("serve --port 1").is_err());
        assert!(parse("launch").is_err());
        assert!(parse("chat --as").is_err());
        assert!(parse("export").is_err(), "--out is required");
        assert!(parse("import").is_err(), "the file is required");
    }
}
