//! The command line, as clap derive types; completions are generated from these too.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::host::HostName;
use crate::model::MAX_GPUS;
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
    /// redis://[USER:PASSWORD@]host:port/db, rediss://... (TLS) or
    /// redis+unix:///path/to/redis.sock
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
    Queue(QueueArgs),
    Report(ReportArgs),
    Web(WebArgs),
    Init(InitArgs),
    Prompt(PromptArgs),
    Completions(CompletionsArgs),
    #[command(hide = true)]
    GenerateMan(GenerateManArgs),
}

/// Initialize GPU pool for this machine
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu admin --gpus 8            # a new pool of GPUs 0 to 7\n  \
    canhazgpu admin --gpus 4 --force    # start over with 4 GPUs, dropping all reservations\n  \
    canhazgpu admin --take-over-host    # this machine now owns its name (config `host`)\n\n\
    With the embedded store, admin creates the state directory (default /var/lib/canhazgpu)\n\
    with mode 0777 so that every local user can reserve; on an existing one it repairs the\n\
    modes of the directory and its files.")]
pub struct AdminArgs {
    /// Number of GPUs in the pool (IDs 0 to N-1) [default: the number NVML or AMD SMI
    /// reports, MIG instances counted with mig = true]
    #[arg(
        short,
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_GPUS))
    )]
    pub gpus: Option<u32>,

    /// Reinitialize an existing pool, dropping every reservation
    #[arg(long)]
    pub force: bool,

    /// Make this machine the owner of its host name (config `host`) in the shared Redis,
    /// when another machine registered it (a replaced or renamed server). The pool and
    /// its reservations stay; with --gpus, the pool is (re)initialized too
    #[arg(long)]
    pub take_over_host: bool,

    #[command(flatten)]
    pub libraries: GpuLibraryArgs,
}

/// Release all manually reserved GPUs held by the current user
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu release         # give back every manual reservation you hold\n  \
    canhazgpu release --all   # the same, also in a shell set up with `canhazgpu init`\n  \
    canhazgpu release --gpu-ids 3   # GPU 3 only, even a run's (its wrapper died)\n  \
    canhazgpu release --gpu-ids 3 --force   # an admin takes GPU 3 back from its holder\n\n\
    In a shell set up with `canhazgpu init`, release gives back only what that shell\n\
    reserved and restores its CUDA_VISIBLE_DEVICES. GPUs held by `canhazgpu run` are\n\
    released when the command ends; they are not touched.")]
pub struct ReleaseArgs {
    /// Release every manual reservation you hold, not only this shell's
    #[arg(long)]
    pub all: bool,

    /// Release exactly these GPUs, which must be yours; `run` reservations too (for a job
    /// whose wrapper died while its command lives on)
    #[arg(
        short = 'G',
        long,
        value_name = "IDS",
        value_delimiter = ',',
        conflicts_with = "all"
    )]
    pub gpu_ids: Option<Vec<u32>>,

    /// With --gpu-ids: also GPUs that others hold, a `run`'s too (admins only: root, the
    /// config's `admins`, or the owner of the store's directory). The holder's shell says
    /// so at its next prompt, and the history records the end.
    #[arg(long, requires = "gpu_ids")]
    pub force: bool,

    /// Print shell code for this shell on stdout (used by the function from `init`)
    #[arg(long, hide = true, value_enum, requires = "owner_pid")]
    pub shell: Option<Shell>,

    /// Release only what this shell process reserved (used by the function from `init`)
    #[arg(
        long,
        hide = true,
        value_name = "PID",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub owner_pid: Option<u32>,

    /// Release nothing; drop from the shell's variables what the store says it no longer
    /// holds (used by the prompt hook from `init`)
    #[arg(
        long,
        hide = true,
        requires = "shell",
        conflicts_with_all = ["all", "inherited", "gpu_ids"]
    )]
    pub sync: bool,

    /// Release nothing and read no store; drop variables inherited from a shell that is
    /// not an ancestor (used by the script from `init` at shell start)
    #[arg(long, hide = true, requires = "shell", conflicts_with_all = ["all", "gpu_ids"])]
    pub inherited: bool,

    /// The shell function runs in a subshell: print the shell code only if it goes back
    /// to the shell for `eval "$(...)"` (used by the function from `init`)
    #[arg(long, hide = true, requires = "shell")]
    pub subshell: bool,
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
    shell by itself (the eval form above does the same there), the GPUs are released when\n\
    the shell exits, and a second reserve adds GPUs to the ones the shell holds.\n\n\
    On AMD GPUs the export line sets ROCR_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES and\n\
    CUDA_VISIBLE_DEVICES instead (see docs/gpus.md).")]
pub struct ReserveArgs {
    /// Number of GPUs to reserve
    #[arg(
        short,
        long,
        default_value_t = 1,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_GPUS))
    )]
    pub gpus: u32,

    /// How long to hold them (at least 1s) [default: 8h, or the config's default_duration]
    #[arg(short, long, value_name = "DURATION", allow_hyphen_values = true)]
    pub duration: Option<String>,

    #[command(flatten)]
    pub request: RequestArgs,

    /// Print shell code for this shell on stdout (used by the function from `init`)
    #[arg(long, hide = true, value_enum, requires = "owner_pid")]
    pub shell: Option<Shell>,

    /// Bind the reservation to this shell process (used by the function from `init`)
    #[arg(
        long,
        hide = true,
        value_name = "PID",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub owner_pid: Option<u32>,

    /// The shell function runs in a subshell: print the shell code only if it goes back
    /// to the shell for `eval "$(...)"` (used by the function from `init`)
    #[arg(long, hide = true, requires = "shell")]
    pub subshell: bool,

    // Last, because its help heading applies to every argument after it.
    #[command(flatten)]
    pub alloc: AllocationArgs,
}

/// Reserve GPUs and run a command with CUDA_VISIBLE_DEVICES set
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu run -- python train.py\n  \
    canhazgpu run --gpus 2 -- torchrun --nproc-per-node 2 train.py\n  \
    canhazgpu run -- nvidia-smi\n\n\
    The GPUs are released when the command ends, fails, is killed, or when run itself is\n\
    interrupted. run exits with the command's status (128+N if it died of signal N).\n\n\
    On AMD GPUs, ROCR_VISIBLE_DEVICES names them and HIP_VISIBLE_DEVICES and\n\
    CUDA_VISIBLE_DEVICES count from 0 within them; a MIG instance (mig = true) goes by its\n\
    MIG UUID. See docs/gpus.md.")]
pub struct RunArgs {
    /// Number of GPUs to reserve
    #[arg(
        short,
        long,
        default_value_t = 1,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_GPUS))
    )]
    pub gpus: u32,

    /// Time between heartbeats while the command runs (at least 1s) [default: 60s, or the
    /// config]
    #[arg(long, value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,

    #[command(flatten)]
    pub request: RequestArgs,

    /// Stop the command after DURATION: SIGINT first, SIGKILL after --timeout-grace
    #[arg(short, long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// How long the command may take to exit after the --timeout SIGINT
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout_grace: String,

    /// What to do when someone else took this run's GPUs while it ran (after a store
    /// reset, say): warn, or also send the command SIGTERM
    #[arg(long, value_enum, default_value_t = OnLost::Warn, value_name = "ACTION")]
    pub on_lost: OnLost,

    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,

    // Last, because its help heading applies to every argument after it.
    #[command(flatten)]
    pub alloc: AllocationArgs,
}

/// List the requests waiting for GPUs (--wait), in the order they will be served
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu queue\n  \
    canhazgpu queue --json\n  \
    canhazgpu queue --all-hosts            # every host's queue, under its name")]
pub struct QueueArgs {
    /// Print a JSON array (position, user, actual_user, gpus, gpu_ids, kind, since,
    /// deadline); with --host or --all-hosts, one object per host (docs/status-json.md)
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub hosts: HostsArgs,
}

/// GPU-hours per user over a period
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu report               # the last 30 days\n  \
    canhazgpu report --days 7\n  \
    canhazgpu report --json\n  \
    canhazgpu report --all-hosts --days 7  # per user across hosts, and per host\n\n\
    Counts finished reservations (one per GPU) and the time so far of those still held.")]
pub struct ReportArgs {
    /// How many days back to count
    #[arg(
        long,
        default_value_t = 30,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=3650)
    )]
    pub days: u32,

    /// Print JSON instead of a table; with --host or --all-hosts, an array of one object
    /// per host (docs/status-json.md)
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub hosts: HostsArgs,
}

/// Which hosts' pools `status`, `queue` and `report` show; neither option: this host's.
#[derive(Args, Debug, Default)]
#[group(id = "lab", multiple = false)]
#[command(next_help_heading = "Other hosts")]
pub struct HostsArgs {
    /// Show the pool of host NAME (repeatable): this host, a host registered in the same
    /// Redis, or one named in the config's [hosts]. Reads only; never changes that pool
    #[arg(long = "host", value_name = "NAME", value_parser = parse_host_name)]
    pub hosts: Vec<HostName>,

    /// Show every host: this one, every host registered in the same Redis, and every
    /// host in the config's [hosts], each under its name. Reads only
    #[arg(long)]
    pub all_hosts: bool,
}

impl HostsArgs {
    /// Whether the lab view was asked for, rather than this host's own.
    pub fn any(&self) -> bool {
        self.all_hosts || !self.hosts.is_empty()
    }
}

fn parse_host_name(name: &str) -> Result<HostName, String> {
    HostName::parse(name, "")
}

/// Serve a live, read-only web dashboard of the GPUs, the queue and the usage report
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu web                            # http://127.0.0.1:8080/, this machine only\n  \
    canhazgpu web --listen 127.0.0.1:9000\n  \
    canhazgpu web --listen 0.0.0.0:8080      # readable by anyone who can reach the host\n\n\
    The page and its JSON API (/api/hosts, /api/status, /api/queue, /api/report?days=N,\n\
    /api/events) only read: nothing served changes a pool. It updates itself within 2\n\
    seconds of a change. See docs/web.md.")]
pub struct WebArgs {
    /// Address and port to listen on. Any address but a loopback one makes the page
    /// readable by everyone who can reach it (there is no login)
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        value_name = "ADDR:PORT",
        value_parser = parse_listen
    )]
    pub listen: std::net::SocketAddr,

    #[command(flatten)]
    pub usage: UsageArgs,
}

/// An IP address and port: names would need a resolver, and `localhost` may resolve to
/// more than the loopback address.
fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("'{text}' is not ADDR:PORT with an IP address, e.g. 127.0.0.1:8080 or [::1]:8080")
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLost {
    /// Warn on stderr at every heartbeat and let the command run on
    Warn,
    /// Warn and send the command SIGTERM once
    Kill,
}

/// Show current GPU allocation status
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    canhazgpu status\n  \
    canhazgpu status --verbose     # also say which store was read\n  \
    canhazgpu status --all-hosts   # every host of the lab, each under its name\n  \
    canhazgpu status --host gpu3 --host gpu4\n  \
    canhazgpu status --all-hosts --free 2   # where can I get 2 GPUs now? best first\n\n\
    With --host or --all-hosts, status exits 1 when a host could not be read (the others\n\
    are shown all the same) and 0 when every host was.")]
pub struct StatusArgs {
    /// Also say which store was read and what the GPU library (NVML, AMD SMI) reported
    #[arg(long, short)]
    pub verbose: bool,

    /// Print a JSON array, one object per GPU (schema: docs/status-json.md); with --host
    /// or --all-hosts, one object per host (docs/status-json.md)
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub hosts: HostsArgs,

    /// With --all-hosts or --host: only the hosts where a request for N GPUs would be
    /// served now (free, not in use without reservation, not wanted by the queue), the
    /// most free first
    #[arg(
        long,
        value_name = "N",
        requires = "lab",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_GPUS))
    )]
    pub free: Option<u32>,

    #[command(flatten)]
    pub usage: UsageArgs,
}

/// Where the GPU vendors' libraries are, for the commands that ask them: NVML (the
/// NVIDIA driver's libnvidia-ml.so.1) and AMD SMI (ROCm's libamd_smi.so).
#[derive(Args, Debug)]
#[command(next_help_heading = "GPU detection (NVML, AMD SMI)")]
pub struct GpuLibraryArgs {
    /// NVML library to load: the file, or a directory holding libnvidia-ml.so.1
    /// [default: the config's nvml_library, else the dynamic loader's search path]
    #[arg(long, env = "CANHAZGPU_NVML_LIBRARY", value_name = "PATH")]
    pub nvml_library: Option<PathBuf>,

    /// AMD SMI library to load: the file, or a directory holding libamd_smi.so
    /// [default: the config's amd_smi_library, else the dynamic loader's search path,
    /// else $ROCM_PATH/lib and /opt/rocm/lib]
    #[arg(long, env = "CANHAZGPU_AMD_SMI_LIBRARY", value_name = "PATH")]
    pub amd_smi_library: Option<PathBuf>,
}

/// How much GPU memory in use makes a GPU without reservation busy.
#[derive(Args, Debug)]
#[command(next_help_heading = "GPU detection (NVML, AMD SMI)")]
pub struct UsageArgs {
    #[command(flatten)]
    pub libraries: GpuLibraryArgs,

    /// A GPU without reservation with more than this many MiB of memory in use is
    /// "in use without reservation" [default: 1024, or the config's memory_threshold]
    #[arg(long, value_name = "MIB")]
    pub memory_threshold: Option<u64>,
}

/// What `run` and `reserve` share about the request itself.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// Exactly these GPUs, all or nothing (instead of --gpus)
    #[arg(
        short = 'G',
        long,
        value_name = "IDS",
        value_delimiter = ',',
        conflicts_with = "gpus"
    )]
    pub gpu_ids: Option<Vec<u32>>,

    /// Wait in the queue when the GPUs are busy, for at most TIMEOUT if given (--wait=2h or
    /// -w=2h, with the '='); first come, first served
    #[arg(
        short,
        long,
        value_name = "TIMEOUT",
        num_args = 0..=1,
        require_equals = true
    )]
    pub wait: Option<Option<String>>,

    /// A note shown in status (what this is for)
    #[arg(short, long, value_name = "TEXT")]
    pub note: Option<String>,

    /// Show the reservation as held by NAME (shared accounts); your own account is
    /// recorded too and can always release it
    #[arg(short, long, value_name = "NAME")]
    pub user: Option<String>,

    /// How free GPUs are ranked [default: lru, or the config's allocation_policy]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub policy: Option<crate::alloc::Policy>,
}

/// What `run` and `reserve` share: which GPUs they may hand out and how they name them.
#[derive(Args, Debug)]
#[command(next_help_heading = "GPU detection (NVML, AMD SMI)")]
pub struct AllocationArgs {
    #[command(flatten)]
    pub usage: UsageArgs,

    /// Also hand out GPUs that are in use without a reservation
    #[arg(long)]
    pub force: bool,

    /// What CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES list on NVIDIA GPUs: GPU
    /// indices (in PCI order, as nvidia-smi numbers them) or GPU UUIDs (needs NVML); MIG
    /// instances always go by UUID, AMD GPUs by index [default: index, or the config's
    /// visible_devices]
    #[arg(long, value_enum, value_name = "MODE")]
    pub visible_devices: Option<VisibleDevices>,
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VisibleDevices {
    #[default]
    Index,
    Uuid,
}

/// Print the shell integration for bash, zsh or fish
#[derive(Args, Debug)]
#[command(after_help = "Setup (one line in the shell's startup file):\n  \
    eval \"$(canhazgpu init bash)\"          # ~/.bashrc\n  \
    eval \"$(canhazgpu init zsh)\"           # ~/.zshrc\n  \
    canhazgpu init fish | source           # ~/.config/fish/config.fish\n\n\
    Then `canhazgpu reserve` exports CUDA_VISIBLE_DEVICES into the shell, `canhazgpu release`\n\
    restores what was there before, the shell's exit releases, and `canhazgpu_prompt` prints\n\
    a prompt segment such as `gpu:1,5 3h59m`. See docs/shell.md.\n\n\
    The Debian package also installs these scripts as /usr/share/canhazgpu/init.bash,\n\
    init.zsh and init.fish; `source` one instead, and shells start without running\n\
    canhazgpu:\n  \
    source /usr/share/canhazgpu/init.bash   # ~/.bashrc (init.zsh: ~/.zshrc, init.fish)")]
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

/// Write the manual pages (canhazgpu.1 and one per subcommand) into DIR; hidden, for
/// packaging (scripts/package.sh) and for the committed man/ (a test keeps it fresh)
#[derive(Args, Debug)]
pub struct GenerateManArgs {
    /// Directory to write the pages to (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}
