//! The `dev` tier (`cargo xtask images --tier dev`, not built by default):
//! its tools run for the sandbox user, who has passwordless sudo and zsh.

use super::*;

/// Each tool with what its first line of output starts with.
const TOOLS: &[(&str, &str)] = &[
    ("zsh --version", "zsh 5."),
    ("tmux -V", "tmux "),
    ("git --version", "git version "),
    ("node --version", "v18."),
    ("npm --version", "9."),
    ("rg --version", "ripgrep "),
    // Debian names it fdfind; `fd` is a link to it.
    ("fd --version", "fdfind "),
    ("python3 --version", "Python 3."),
    ("pip3 --version", "pip "),
    ("gcc --version", "gcc "),
    ("make --version", "GNU Make "),
    ("curl --version", "curl "),
    ("jq --version", "jq-"),
    ("sudo -n id -u", "0"),
    ("getent passwd lohar | cut -d: -f7", "/usr/bin/zsh"),
    ("stat -c %U /workspace", "lohar"),
];

/// Node and npm under TCG take seconds to start.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn dev_tier() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions {
        tier: Tier::Dev,
        ..VmOptions::default()
    })?;
    runtime()?.block_on(async {
        let c = t.client();
        c.wait_ready(Duration::from_secs(60)).await?;
        let mut wrong = Vec::new();
        for (cmd, want) in TOOLS {
            let opts = ExecOptions::new(["zsh", "-c", cmd])
                .timeout(TOOL_TIMEOUT)
                .user("lohar");
            let r = c.exec(opts).await?;
            let out = String::from_utf8_lossy(&r.stdout);
            let first = out.lines().next().unwrap_or("");
            if r.exit_code != 0 || !first.starts_with(want) {
                wrong.push(format!(
                    "`{cmd}` exited {}: {first:?} (want {want:?}…); stderr {:?}",
                    r.exit_code,
                    String::from_utf8_lossy(&r.stderr).trim()
                ));
            }
        }
        ensure(wrong.is_empty(), || {
            format!("dev tier tools:\n{}", wrong.join("\n"))
        })
    })
}
