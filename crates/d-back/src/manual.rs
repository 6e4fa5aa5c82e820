//! The manual page (`d_back --man`): clap's rendering of the flags, with the
//! sections a manual page is expected to have and clap does not write:
//! ENVIRONMENT (every variable and the flag it sets), EXIT STATUS and
//! EXAMPLES. Generated from the same flag definitions as `--help`, so the two
//! never disagree.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::config::Cli;

/// Writes the whole page (roff) to `out`.
pub fn render(out: &mut dyn Write) -> io::Result<()> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;

    writeln!(out, ".SH ENVIRONMENT")?;
    writeln!(
        out,
        "Every flag that takes a value can also be set through its variable; a flag \
         on the command line wins over the variable, which wins over the default. \
         An empty variable counts as unset."
    )?;
    for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
        let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        writeln!(out, ".TP")?;
        writeln!(out, "\\fB{}\\fR", roff(&variable.to_string_lossy()))?;
        writeln!(out, "sets \\fB\\-\\-{}\\fR.", roff(long))?;
    }
    writeln!(out, ".TP")?;
    writeln!(out, "\\fBRUST_LOG\\fR")?;
    writeln!(
        out,
        "log filter used when \\fB\\-\\-log\\-level\\fR is not given (default: info)."
    )?;

    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for (code, meaning) in [
        (
            "0",
            "stopped by SIGINT or SIGTERM after closing every connection.",
        ),
        (
            "1",
            "could not start or had to stop: a port in use, a host that does not resolve, \
             a file that cannot be read or parsed, a value that would lock clients out, \
             Discord refusing the bot. One line on stderr says why.",
        ),
        (
            "2",
            "the command line or an environment variable could not be parsed.",
        ),
    ] {
        writeln!(out, ".TP\n\\fB{code}\\fR\n{}", roff(meaning))?;
    }

    writeln!(out, ".SH EXAMPLES")?;
    for (what, example) in [
        ("The built-in world on http://localhost:3000/:", "d_back"),
        (
            "Every guild a Discord bot is in, on every interface:",
            "DISCORD_TOKEN=... d_back \\-\\-host 0.0.0.0",
        ),
        (
            "Servers and users from a file, with JSON logs:",
            "d_back \\-\\-data world.toml \\-\\-log\\-format json",
        ),
        (
            "HTTPS and WSS on port 443, for pages from one origin:",
            "d_back \\-\\-host 0.0.0.0 \\-\\-port 443 \\-\\-tls\\-cert fullchain.pem \\-\\-tls\\-key privkey.pem \\-\\-allowed\\-origin https://nntin.github.io",
        ),
    ] {
        writeln!(
            out,
            ".PP\n{}\n.PP\n.RS 4\n.nf\n{example}\n.fi\n.RE",
            roff(what)
        )?;
    }
    man.render_version_section(out)?;
    Ok(())
}

/// Escapes text for roff: backslashes and hyphens (so that flags stay
/// hyphens), and a leading dot or quote that would start a request.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
