//! The command line, as clap derive types; completions are generated from these too.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
        canhazgpu release"
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
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub gpus: u32,

    /// Reinitialize an existing pool, dropping every reservation
    #[arg(long)]
    pub force: bool,
}

/// Release all manually reserved GPUs held by the current user
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu release      # give back every manual reservation you hold\n\n\
    GPUs held by `canhazgpu run` are released when the command ends; they are not touched.")]
pub struct ReleaseArgs {}

/// Reserve GPUs manually for a specified duration
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu reserve                          # 1 GPU for 8 hours\n  \
    canhazgpu reserve --gpus 2 --duration 4h\n  \
    canhazgpu reserve --duration 30m\n  \
    eval \"$(canhazgpu reserve --gpus 2)\"       # also export CUDA_VISIBLE_DEVICES here\n\n\
    Durations: 30m, 2h, 1d, 0.5h, 1h30m (at most 30d). The export line goes to stdout,\n\
    everything else to stderr.")]
pub struct ReserveArgs {
    /// Number of GPUs to reserve
    #[arg(long, default_value_t = 1, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub gpus: u32,

    /// How long to hold them
    #[arg(
        long,
        default_value = "8h",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    pub duration: String,
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
    #[arg(long, default_value_t = 1, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1024))]
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
