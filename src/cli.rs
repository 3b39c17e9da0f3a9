//! The command line, as clap derive types; completions are generated from these too.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::shell::Shell;

#[derive(Parser, Debug)]
#[command(
    name = "canhazgpu",
    version,
    about = "Exclusive GPU reservations for shared Linux hosts",
    long_about = "Exclusive GPU reservations for shared Linux hosts.\n\n\
        Reserve GPUs for a command (`run`) or for a while (`reserve`), see who holds what \
        (`status`) and give them back (`release`). Two people never get the same GPU, and \
        GPUs of crashed jobs and expired reservations come back by themselves.",
    after_help = "Examples:\n  \
        canhazgpu admin --gpus 8                  # once per host, as root\n  \
        canhazgpu status\n  \
        canhazgpu run --gpus 2 -- python train.py\n  \
        canhazgpu reserve --gpus 1 --duration 2h\n  \
        canhazgpu release\n  \
        eval \"$(canhazgpu init bash)\"              # in ~/.bashrc: reserve exports into the shell"
)]
pub struct Cli {
    /// Where the pool lives: file:///dir (embedded, default file:///var/lib/canhazgpu),
    /// redis://host:port/db or redis+unix:///path/to/redis.sock
    #[arg(long, global = true, env = "CANHAZGPU_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Configuration file [default: /etc/canhazgpu/config.toml]
    #[arg(long, global = true, env = "CANHAZGPU_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Admin(AdminArgs),
    Release(ReleaseArgs),
    Reserve(ReserveArgs),
    Run(RunArgs),
    Status(StatusArgs),
    Init(InitArgs),
    Prompt(PromptArgs),
    Completions(CompletionsArgs),
}

/// Initialize GPU pool for this machine
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu admin --gpus 8            # a new pool of GPUs 0 to 7\n  \
    canhazgpu admin --gpus 4 --force    # start over with 4 GPUs, dropping all reservations\n\n\
    With the embedded store, admin creates the state directory (default /var/lib/canhazgpu)\n\
    with mode 0777 so that every local user can reserve.")]
pub struct AdminArgs {
    /// Number of GPUs in the pool (IDs 0 to N-1)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub gpus: u32,

    /// Reinitialize an existing pool, dropping every reservation
    #[arg(long)]
    pub force: bool,
}

/// Release all manually reserved GPUs held by the current user
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu release         # give back every manual reservation you hold\n  \
    canhazgpu release --all   # the same, also in a shell set up with `canhazgpu init`\n\n\
    In a shell set up with `canhazgpu init`, release gives back only what that shell\n\
    reserved and restores its CUDA_VISIBLE_DEVICES. GPUs held by `canhazgpu run` are\n\
    released when the command ends; they are not touched.")]
pub struct ReleaseArgs {
    /// Release every manual reservation you hold, not only this shell's
    #[arg(long)]
    pub all: bool,

    /// Print shell code for this shell on stdout (used by the function from `init`)
    #[arg(long, hide = true, value_enum, requires = "owner_pid")]
    pub shell: Option<Shell>,

    /// Release only what this shell process reserved (used by the function from `init`)
    #[arg(long, hide = true, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub owner_pid: Option<u32>,

    /// Release nothing; drop from the shell's variables what the store says it no longer
    /// holds (used by the prompt hook from `init`)
    #[arg(long, hide = true, requires = "shell", conflicts_with_all = ["all", "inherited"])]
    pub sync: bool,

    /// Release nothing and read no store; drop variables inherited from a shell that is
    /// not an ancestor (used by the script from `init` at shell start)
    #[arg(long, hide = true, requires = "shell", conflicts_with = "all")]
    pub inherited: bool,
}

/// Reserve GPUs manually for a specified duration
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu reserve                          # 1 GPU for 8 hours\n  \
    canhazgpu reserve --gpus 2 --duration 4h\n  \
    canhazgpu reserve --duration 30m\n  \
    eval \"$(canhazgpu reserve --gpus 2)\"       # also export CUDA_VISIBLE_DEVICES here\n\n\
    Durations: 30m, 2h, 1d, 0.5h, 1h30m (at most 30d). The export line goes to stdout,\n\
    everything else to stderr.\n\n\
    In a shell set up with `canhazgpu init`, reserve exports CUDA_VISIBLE_DEVICES into that\n\
    shell by itself, the GPUs are released when the shell exits, and a second reserve adds\n\
    GPUs to the ones the shell holds.")]
pub struct ReserveArgs {
    /// Number of GPUs to reserve
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub gpus: u32,

    /// How long to hold them
    #[arg(long, default_value = "8h", value_name = "DURATION")]
    pub duration: String,

    /// Print shell code for this shell on stdout (used by the function from `init`)
    #[arg(long, hide = true, value_enum, requires = "owner_pid")]
    pub shell: Option<Shell>,

    /// Bind the reservation to this shell process (used by the function from `init`)
    #[arg(long, hide = true, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub owner_pid: Option<u32>,
}

/// Reserve GPUs and run a command with CUDA_VISIBLE_DEVICES set
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu run -- python train.py\n  \
    canhazgpu run --gpus 2 -- torchrun --nproc-per-node 2 train.py\n  \
    canhazgpu run -- nvidia-smi\n\n\
    The GPUs are released when the command ends, fails, is killed, or when run itself is\n\
    interrupted. run exits with the command's status (128+N if it died of signal N).")]
pub struct RunArgs {
    /// Number of GPUs to reserve
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub gpus: u32,

    /// Seconds between heartbeats while the command runs [default: 60s, or the config]
    #[arg(long, value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,

    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// Show current GPU allocation status
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu status\n  \
    canhazgpu status --verbose     # also say which store was read")]
pub struct StatusArgs {
    /// Also say which store was read
    #[arg(long, short)]
    pub verbose: bool,
}

/// Print the shell integration for bash, zsh or fish
#[derive(Args, Debug)]
#[command(after_help = "Setup (one line in the shell's startup file):\n  \
    eval \"$(canhazgpu init bash)\"          # ~/.bashrc\n  \
    eval \"$(canhazgpu init zsh)\"           # ~/.zshrc\n  \
    canhazgpu init fish | source           # ~/.config/fish/config.fish\n\n\
    Then `canhazgpu reserve` exports CUDA_VISIBLE_DEVICES into the shell, `canhazgpu release`\n\
    restores what was there before, the shell's exit releases, and `canhazgpu_prompt` prints\n\
    a prompt segment such as `gpu:1,5 3h59m`. See docs/shell.md.")]
pub struct InitArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print what this shell holds, for a prompt (reads the store, never the GPUs)
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu prompt                                  # e.g. gpu:1,5 3h59m\n  \
    CANHAZGPU_PROMPT_FORMAT='[{count}: {gpus}]' canhazgpu prompt\n\n\
    Prints nothing when the shell (CANHAZGPU_OWNER_PID, set by a reserve in a shell set up\n\
    with `canhazgpu init`) holds no GPUs. {gpus}, {count} and {left} are replaced in the\n\
    format. The `canhazgpu_prompt` shell function prints the same from the environment\n\
    alone, without running anything.")]
pub struct PromptArgs {}

/// Print shell completions
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu completions bash > ~/.local/share/bash-completion/completions/canhazgpu\n  \
    canhazgpu completions zsh > ~/.zfunc/_canhazgpu     # a directory in $fpath\n  \
    canhazgpu completions fish > ~/.config/fish/completions/canhazgpu.fish")]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
