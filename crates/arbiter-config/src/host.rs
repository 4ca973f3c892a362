//! `[host]`: what this machine declares about itself to the fleet — the capabilities
//! work items may require (`capabilities = ["gpu", "windows", "repo:web"]`).

use arbiter_core::Result;
use arbiter_core::name::Capability;
use arbiter_core::queue::capability_set;
use toml::Spanned;

use crate::Source;
use crate::raw::RawHost;

/// The validated `[host]` section (empty when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// Sorted, without repeats.
    pub capabilities: Vec<Capability>,
}

pub(crate) fn validate(raw: Option<&Spanned<RawHost>>, source: &Source<'_>) -> Result<HostSettings> {
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return Ok(HostSettings::default());
    };
    let mut capabilities = Vec::new();
    for cap in &raw.capabilities {
        let parsed =
            Capability::parse(cap.get_ref()).map_err(|e| source.error(cap.span(), "host.capabilities", e.message))?;
        capabilities.push(parsed);
    }
    let capabilities = capability_set(capabilities).map_err(|e| {
        let span = raw.capabilities.first().map(|c| c.span()).unwrap_or(0..0);
        source.error(span, "host.capabilities", e.message)
    })?;
    Ok(HostSettings { capabilities })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Config;

    #[test]
    fn capabilities_are_read_sorted_and_checked_by_line() {
        let config = Config::parse(
            "[host]\ncapabilities = [\"windows\", \"gpu\", \"gpu\"]\n",
            Path::new("a.toml"),
        )
        .unwrap();
        let caps: Vec<&str> = config.host.capabilities.iter().map(|c| c.as_str()).collect();
        assert_eq!(caps, ["gpu", "windows"]);
        let err = Config::parse("[host]\ncapabilities = [\"gpu\",\n  \"GPU\"]\n", Path::new("a.toml")).unwrap_err();
        assert!(err.message.contains("a.toml:3: host.capabilities:"), "{}", err.message);
        assert!(err.message.contains("a-z"), "{}", err.message);
        let err = Config::parse("[host]\ncapabilities = \"gpu\"\n", Path::new("a.toml")).unwrap_err();
        assert!(err.message.contains("a.toml:2:"), "{}", err.message);
        let err = Config::parse("[host]\ncaps = []\n", Path::new("a.toml")).unwrap_err();
        assert!(err.message.contains("caps"), "{}", err.message);
    }
}
