//! Reading a program from an ELF object as `clang -O2 -target bpf` writes it: the code of
//! section `btfuse` and the counter names of section `btfuse_counters`.

use elf::ElfBytes;
use elf::abi;
use elf::endian::LittleEndian;

/// Section holding the entry function (`BTFUSE_PROGRAM`).
pub const PROGRAM_SECTION: &str = "btfuse";
/// Section holding the counters' names, NUL-separated (`BTFUSE_COUNTERS`).
pub const COUNTERS_SECTION: &str = "btfuse_counters";

/// Most counters one program may name and bump (`btfuse_count`'s first argument).
pub const MAX_COUNTERS: usize = 64;

/// A program as read from its object file.
#[derive(Debug)]
pub struct Object {
    /// The instructions.
    pub code: Vec<u8>,
    /// Names of counters 0, 1, ...; counters past these are named by their number.
    pub counter_names: Vec<String>,
}

/// Reads `bytes`, the contents of an object file; or says what is wrong with it.
pub fn parse(bytes: &[u8]) -> Result<Object, String> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(bytes)
        .map_err(|e| format!("not a little-endian ELF object: {e}"))?;
    if file.ehdr.e_machine != abi::EM_BPF {
        return Err(format!(
            "an ELF object for machine {}, not eBPF ({}): compile with clang -target bpf",
            file.ehdr.e_machine,
            abi::EM_BPF
        ));
    }
    let (headers, names) = file
        .section_headers_with_strtab()
        .map_err(|e| format!("unreadable section headers: {e}"))?;
    let (Some(headers), Some(names)) = (headers, names) else {
        return Err("no section headers".into());
    };
    let mut program = None;
    let mut counters = None;
    for (index, header) in headers.iter().enumerate() {
        match names.get(header.sh_name as usize) {
            Ok(PROGRAM_SECTION) => program = Some((index, header)),
            Ok(COUNTERS_SECTION) => counters = Some(header),
            _ => {}
        }
    }
    let Some((index, header)) = program else {
        return Err(format!(
            "no section `{PROGRAM_SECTION}`: mark the entry function BTFUSE_PROGRAM \
             (btfuse_bpf.h)"
        ));
    };
    if header.sh_type != abi::SHT_PROGBITS || header.sh_size == 0 {
        return Err(format!("section `{PROGRAM_SECTION}` holds no code"));
    }
    for rel in headers.iter() {
        if (rel.sh_type == abi::SHT_REL || rel.sh_type == abi::SHT_RELA)
            && rel.sh_info as usize == index
            && rel.sh_size > 0
        {
            let first = file
                .section_data_as_rels(&rel)
                .ok()
                .and_then(|mut r| r.next())
                .map_or(0, |r| r.r_offset / 8);
            return Err(format!(
                "the code needs relocating (first at insn #{first}): global variables, string \
                 constants, maps and calls of functions that are not inlined are not \
                 supported; keep data on the stack and mark helpers `static __always_inline`"
            ));
        }
    }
    let (code, compression) = file
        .section_data(&header)
        .map_err(|e| format!("unreadable section `{PROGRAM_SECTION}`: {e}"))?;
    if compression.is_some() {
        return Err(format!("section `{PROGRAM_SECTION}` is compressed"));
    }
    let counter_names = match counters {
        None => Vec::new(),
        Some(header) => {
            let (data, _) = file
                .section_data(&header)
                .map_err(|e| format!("unreadable section `{COUNTERS_SECTION}`: {e}"))?;
            counter_names(data)?
        }
    };
    Ok(Object {
        code: code.to_vec(),
        counter_names,
    })
}

/// The names in a `btfuse_counters` section: NUL-separated, each a Prometheus-friendly label.
fn counter_names(data: &[u8]) -> Result<Vec<String>, String> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = data
        .split(|&b| b == 0)
        .map(|name| {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
            if ok {
                Ok(String::from_utf8_lossy(name).into_owned())
            } else {
                Err(format!(
                    "counter name {:?} in `{COUNTERS_SECTION}`: use 1 to 64 letters, digits, \
                     `_` or `-`",
                    String::from_utf8_lossy(name)
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    if names.len() > MAX_COUNTERS {
        return Err(format!(
            "{} counters named, more than {MAX_COUNTERS}",
            names.len()
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_checked() {
        assert_eq!(
            counter_names(b"unlinks\0renames\0").unwrap(),
            ["unlinks", "renames"]
        );
        assert!(counter_names(b"").unwrap().is_empty());
        assert!(counter_names(b"a\0\0b").is_err());
        assert!(counter_names(b"bad name").is_err());
    }

    #[test]
    fn what_is_not_an_ebpf_object_is_refused_with_the_reason() {
        assert!(
            parse(b"hello")
                .unwrap_err()
                .contains("not a little-endian ELF")
        );
        let own = std::fs::read("/proc/self/exe").unwrap();
        assert!(parse(&own).unwrap_err().contains("not eBPF"));
    }
}
