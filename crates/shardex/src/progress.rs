//! The progress bar of the long commands (`replay`, `simulate`): drawn only on a terminal, so
//! that redirected output and `--json` stay clean.

use std::io::IsTerminal;

/// A bar of `total` units with `template` (an indicatif template), or `None` when stderr is
/// not a terminal.
pub fn bar(total: u64, template: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}
