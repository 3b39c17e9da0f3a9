//! Reading the process records `amdsmi_get_gpu_process_list` fills in.
//!
//! Since ROCm 6.1 the call fills an array of `amdsmi_proc_info_t`, whose layout changed
//! with the library: up to ROCm 6.3 (library 24.x) its strings were 32 bytes
//! ([`SHORT`]), from ROCm 6.4 (25.x) 256 bytes ([`LONG`]). The symbol's name did not
//! change, so the layout is found by reading the array both ways: records in the other
//! layout never pass as valid (see [`parse`]). Pure, so that both layouts are tested
//! here on bytes.

/// Where the fields canhazgpu reads sit in one layout, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    /// `sizeof(amdsmi_proc_info_t)`.
    pub stride: usize,
    /// `pid` (uint32_t).
    pub pid: usize,
    /// `memory_usage.vram_mem` (uint64_t, bytes).
    pub vram: usize,
}

/// ROCm 6.4 and later: `name[256]`, ..., `container_name[256]`, `cu_occupancy`, ...
pub(super) const LONG: Layout = Layout {
    stride: 704,
    pid: 256,
    vram: 352,
};

/// ROCm 6.1 to 6.3: `name[32]`, ..., `container_name[32]`, `reserved[4]`.
pub(super) const SHORT: Layout = Layout {
    stride: 224,
    pid: 32,
    vram: 128,
};

/// The largest layout, for sizing the array the library fills.
pub(super) const MAX_STRIDE: usize = LONG.stride;

/// The kernel never hands out a pid above this (`pid_max` is at most 2^22).
const PID_MAX: u32 = 1 << 22;

/// `(pid, VRAM bytes)` of the `count` records at the start of `buffer`, which was
/// zeroed before the call, read in the first layout in which every record is valid:
/// a pid the kernel could hand out and no more VRAM than the GPU has (`total`).
///
/// Why the wrong layout never passes: LONG records read as SHORT put the pid inside
/// the 256-byte name, past the end of any process name, where the library leaves
/// zeros. SHORT records read as LONG put the last record's pid beyond the bytes the
/// library wrote (`704 * (count - 1) + 256 >= 224 * count`), which are still zero.
pub(super) fn parse(buffer: &[u8], count: usize, total: u64) -> Option<Vec<(u32, u64)>> {
    [LONG, SHORT]
        .into_iter()
        .find_map(|layout| parse_as(buffer, count, total, layout))
}

fn parse_as(buffer: &[u8], count: usize, total: u64, layout: Layout) -> Option<Vec<(u32, u64)>> {
    (0..count)
        .map(|record| {
            let start = record.checked_mul(layout.stride)?;
            let pid = u32::from_ne_bytes(field(buffer, start + layout.pid)?);
            let vram = u64::from_ne_bytes(field(buffer, start + layout.vram)?);
            (pid != 0 && pid <= PID_MAX && vram <= total).then_some((pid, vram))
        })
        .collect()
}

fn field<const N: usize>(buffer: &[u8], at: usize) -> Option<[u8; N]> {
    buffer.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    /// Records as the library writes them, into a zeroed buffer of room for `room`
    /// records of the largest layout.
    fn written(layout: Layout, records: &[(u32, u64, &str)], room: usize) -> Vec<u8> {
        let mut buffer = vec![0u8; room * MAX_STRIDE];
        for (at, &(pid, vram, name)) in records.iter().enumerate() {
            let start = at * layout.stride;
            buffer[start..start + name.len()].copy_from_slice(name.as_bytes());
            buffer[start + layout.pid..start + layout.pid + 4].copy_from_slice(&pid.to_ne_bytes());
            buffer[start + layout.vram..start + layout.vram + 8]
                .copy_from_slice(&vram.to_ne_bytes());
        }
        buffer
    }

    #[test]
    fn both_layouts_read_back() {
        let records = [(4242, 10 * GIB, "python3"), (17, 0, "rvs")];
        for layout in [LONG, SHORT] {
            let buffer = written(layout, &records, 4);
            assert_eq!(
                parse(&buffer, 2, 64 * GIB),
                Some(vec![(4242, 10 * GIB), (17, 0)]),
                "{layout:?}"
            );
        }
        assert_eq!(parse(&[], 0, 0), Some(vec![]));
    }

    #[test]
    fn nonsense_is_refused() {
        // More VRAM than the GPU has, a pid of 0: no layout fits.
        let buffer = written(SHORT, &[(5, 100 * GIB, "x")], 1);
        assert_eq!(parse(&buffer, 1, 64 * GIB), None);
        let buffer = written(LONG, &[(0, 1, "x")], 1);
        assert_eq!(parse(&buffer, 1, 64 * GIB), None);
        // A buffer shorter than the records claimed.
        assert_eq!(parse(&[0; 10], 1, 64 * GIB), None);
    }

    proptest! {
        /// Whatever the processes, each layout reads back as itself.
        #[test]
        fn the_layout_is_never_mistaken(
            records in proptest::collection::vec(
                (1u32..PID_MAX, 0u64..(80 * GIB), "[a-z]{1,15}"),
                0..12,
            ),
            long in any::<bool>(),
        ) {
            let layout = if long { LONG } else { SHORT };
            let records: Vec<(u32, u64, &str)> = records
                .iter()
                .map(|(pid, vram, name)| (*pid, *vram, name.as_str()))
                .collect();
            let buffer = written(layout, &records, records.len() + 2);
            let expected: Vec<(u32, u64)> =
                records.iter().map(|&(pid, vram, _)| (pid, vram)).collect();
            prop_assert_eq!(parse(&buffer, records.len(), 80 * GIB), Some(expected));
        }
    }
}
