//! The command line, parsed by hand (two subcommands do not need a parser crate):
//! `loyalty-bot [serve] [--config <path>]` and `loyalty-bot chat [--config <path>] [--as <id>]`.

use std::path::PathBuf;

pub const USAGE: &str = "\
loyalty-bot: a customer-loyalty engine for Facebook Messenger and ManyChat

Usage:
  loyalty-bot [serve] [--config <path>]            run the service (the default)
  loyalty-bot chat [--config <path>] [--as <id>]   talk to the bot in this terminal
  loyalty-bot --help                               show this text

Options:
  --config <path>  configuration file [default: ./config.toml]; any key can be
                   overridden with LOYALTY__<SECTION>__<KEY> environment variables
  --as <id>        who you are in the terminal chat [default: owner]";

const DEFAULT_CONFIG: &str = "config.toml";
const DEFAULT_CHAT_ID: &str = "owner";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve { config: PathBuf },
    Chat { config: PathBuf, id: String },
    Help,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    #[error("unknown command or option `{0}`")]
    Unknown(String),
    #[error("`{0}` needs a value")]
    MissingValue(&'static str),
    #[error("`--as` is only for `chat`")]
    AsWithoutChat,
}

impl Command {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, CliError> {
        let mut args = args.into_iter().peekable();
        let chat = match args.peek().map(String::as_str) {
            Some("chat") => true,
            Some("serve") => false,
            _ => {
                return Self::options(args, false);
            }
        };
        args.next();
        Self::options(args, chat)
    }

    fn options(mut args: impl Iterator<Item = String>, chat: bool) -> Result<Command, CliError> {
        let mut config = PathBuf::from(DEFAULT_CONFIG);
        let mut id = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-h" | "--help" | "help" => return Ok(Command::Help),
                "--config" => {
                    config = args
                        .next()
                        .ok_or(CliError::MissingValue("--config"))?
                        .into()
                }
                "--as" => id = Some(args.next().ok_or(CliError::MissingValue("--as"))?),
                _ => return Err(CliError::Unknown(arg)),
            }
        }
        match (chat, id) {
            (true, id) => Ok(Command::Chat {
                config,
                id: id.unwrap_or_else(|| DEFAULT_CHAT_ID.to_owned()),
            }),
            (false, None) => Ok(Command::Serve { config }),
            (false, Some(_)) => Err(CliError::AsWithoutChat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, CliError> {
        Command::parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn no_subcommand_serves_with_the_default_config() {
        let serve = |p: &str| Ok(Command::Serve { config: p.into() });
        assert_eq!(parse(""), serve("config.toml"));
        assert_eq!(parse("serve"), serve("config.toml"));
        assert_eq!(parse("--config /etc/l.toml"), serve("/etc/l.toml"));
        assert_eq!(parse("serve --config x.toml"), serve("x.toml"));
    }

    #[test]
    fn chat_takes_an_identity() {
        let chat = |c: &str, id: &str| {
            Ok(Command::Chat {
                config: c.into(),
                id: id.into(),
            })
        };
        assert_eq!(parse("chat"), chat("config.toml", "owner"));
        assert_eq!(
            parse("chat --as ana --config c.toml"),
            chat("c.toml", "ana")
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(parse("--help"), Ok(Command::Help));
        assert_eq!(parse("chat -h"), Ok(Command::Help));
        assert_eq!(
            parse("serve --port 1"),
            Err(CliError::Unknown("--port".into()))
        );
        assert_eq!(parse("launch"), Err(CliError::Unknown("launch".into())));
        assert_eq!(parse("chat --as"), Err(CliError::MissingValue("--as")));
        assert_eq!(parse("--as ana"), Err(CliError::AsWithoutChat));
    }
}
