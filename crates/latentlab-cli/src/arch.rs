//! What `--arch`, `--hidden` and `--checkpoint-arch` name: hidden widths,
//! the built-in stacks and a user's JSON layer specification.

use std::path::{Path, PathBuf};

use latentlab::model::{NamedStacks, Stacks};

/// Hidden widths, parsed from one flag value (`512,256`). A newtype, so
/// clap takes the list as one value rather than as repeated flags.
#[derive(Clone, Debug)]
pub struct Hidden(pub Vec<usize>);

/// Parses `512,256` (an empty string gives no hidden layer).
pub fn parse_hidden(text: &str) -> Result<Hidden, String> {
    parse_widths(text).map(Hidden)
}

fn parse_widths(text: &str) -> Result<Vec<usize>, String> {
    if text.trim().is_empty() || text == "none" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|t| {
            t.trim()
                .parse::<usize>()
                .ok()
                .filter(|&h| (1..=65_536).contains(&h))
                .ok_or_else(|| format!("`{t}` is not a layer width (1 to 65536)"))
        })
        .collect()
}

/// The architecture `--arch` names.
#[derive(Clone, Debug)]
pub enum Arch {
    /// An MLP with these hidden widths (`None`: `--hidden`'s).
    Mlp(Option<Vec<usize>>),
    /// The convolutional VAE for 64×64 images (Burgess et al. 2018).
    Conv64,
    /// The convolutional VAE for 28×28 images.
    Conv28,
    /// A user's stacks, read from a JSON file.
    File(PathBuf, Stacks),
}

/// Largest `--arch` file read.
const MAX_ARCH_FILE: u64 = 1 << 20;

/// Parses `mlp`, `mlp:512,256`, `conv64`, `conv28` or a JSON file of
/// `{"encoder": [layers…], "decoder": [layers…]}`.
pub fn parse_arch(text: &str) -> Result<Arch, String> {
    match text {
        "mlp" => return Ok(Arch::Mlp(None)),
        "conv64" => return Ok(Arch::Conv64),
        "conv28" => return Ok(Arch::Conv28),
        _ => {}
    }
    if let Some(w) = text.strip_prefix("mlp:") {
        return parse_widths(w).map(|w| Arch::Mlp(Some(w)));
    }
    let path = Path::new(text);
    if !path.is_file() {
        return Err(format!(
            "`{text}` is neither mlp, mlp:WIDTHS, conv64, conv28 nor a JSON file of stacks"
        ));
    }
    let named = read_stacks_file(path)?;
    if let Some(r) = named.renames.first() {
        return Err(format!(
            "{text}: names a checkpoint's modules (`{}`); names are for reading a foreign checkpoint with --checkpoint-arch, a model latentlab trains names its own",
            r.from.trim_end_matches('.')
        ));
    }
    Ok(Arch::File(path.into(), named.stacks))
}

/// Reads a JSON layer specification, whose layers may name a checkpoint's
/// modules ([`latentlab::model::parse_named_stacks`]).
pub fn read_stacks_file(path: &Path) -> Result<NamedStacks, String> {
    let text = path.display();
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{text}: {e}"))?
        .len();
    if len > MAX_ARCH_FILE {
        return Err(format!(
            "{text}: {len} bytes is too large for an architecture"
        ));
    }
    let json = std::fs::read_to_string(path).map_err(|e| format!("{text}: {e}"))?;
    latentlab::model::parse_named_stacks(&json).map_err(|e| {
        format!(
            "{text}: not a layer specification ({{\"encoder\": [...], \"decoder\": [...]}}): {e}"
        )
    })
}

impl Arch {
    /// The stacks for images of `channels` channels (`None`: the MLP of the
    /// config's `hidden`).
    pub fn stacks(&self, channels: usize) -> Option<Stacks> {
        match self {
            Arch::Mlp(_) => None,
            Arch::Conv64 => Some(Stacks::conv64(channels)),
            Arch::Conv28 => Some(Stacks::conv28(channels)),
            Arch::File(_, s) => Some(s.clone()),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arch::Mlp(None) => write!(f, "mlp"),
            Arch::Mlp(Some(w)) => write!(f, "mlp:{w:?}"),
            Arch::Conv64 => write!(f, "conv64"),
            Arch::Conv28 => write!(f, "conv28"),
            Arch::File(p, _) => write!(f, "{}", p.display()),
        }
    }
}
