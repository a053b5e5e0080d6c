//! Parsing one command's flags from an argument list, for callers that run
//! a command in-process (the Python package, `latentlab study`).

use crate::error::{CliError, Result};

/// `T`'s flags from `argv` (the arguments after the command's name); a
/// flag error is clap's message for `command`.
pub fn parse<A, I, T>(command: &'static str, argv: I) -> Result<A>
where
    A: clap::Args,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    #[derive(clap::Parser)]
    struct Only<A: clap::Args> {
        #[command(flatten)]
        flags: A,
    }
    let args =
        std::iter::once(std::ffi::OsString::from(command)).chain(argv.into_iter().map(Into::into));
    let clap_err = |e: clap::Error| CliError::from(e.render().to_string().trim_end().to_string());
    let matches = <Only<A> as clap::CommandFactory>::command()
        .name(command)
        .try_get_matches_from(args)
        .map_err(clap_err)?;
    <Only<A> as clap::FromArgMatches>::from_arg_matches(&matches)
        .map(|o| o.flags)
        .map_err(clap_err)
}
