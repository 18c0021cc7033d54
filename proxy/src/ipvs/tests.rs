use super::*;

fn web(persistence: Option<u32>) -> VirtualService {
    VirtualService {
        addr: Ipv4Addr::new(10, 96, 0, 10),
        port: 80,
        protocol: L4Protocol::Tcp,
        scheduler: "rr".into(),
        persistence,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The service key as the kernel's `ip_vs_genl_parse_service` reads it (x86-64, so the
/// native-endian fields are little-endian): AF_INET, TCP, 10.96.0.10 padded to 16 bytes,
/// port 80 big-endian.
const SERVICE_KEY: &str = concat!(
    "0600", "0100", "0200", "0000", "0600", "0200", "0600", "0000", "1400", "0300", "0a60000a",
    "00000000", "00000000", "00000000", "0600", "0400", "0050", "0000",
);

#[test]
fn new_service_matches_the_fixture() {
    let bytes = new_service(&web(Some(10_800))).expect("valid service");
    let expected = [
        "01010000", // NEW_SERVICE, version 1
        "5400",
        "0180", // CMD_ATTR_SERVICE | NLA_F_NESTED, 84 bytes
        SERVICE_KEY,
        "0700",
        "0600",
        "72720000", // SCHED_NAME "rr\0" + pad
        "0c00",
        "0700",
        "01000000",
        "ffffffff", // FLAGS persistent / mask
        "0800",
        "0800",
        "302a0000", // TIMEOUT 10800
        "0800",
        "0900",
        "ffffffff", // NETMASK /32
    ]
    .concat();
    assert_eq!(hex(&bytes), expected);
}

#[test]
fn new_dest_matches_the_fixture() {
    let bytes = new_dest(
        &web(None),
        SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 2), 8080),
        1,
    );
    let expected = [
        "05010000",
        "3000",
        "0180",
        SERVICE_KEY, // the service, 48 bytes
        "4800",
        "0280", // CMD_ATTR_DEST | NLA_F_NESTED, 72 bytes
        "1400",
        "0100",
        "0af40002",
        "00000000",
        "00000000",
        "00000000", // ADDR
        "0600",
        "0200",
        "1f90",
        "0000", // PORT 8080
        "0600",
        "0b00",
        "0200",
        "0000", // ADDR_FAMILY
        "0800",
        "0300",
        "00000000", // FWD_METHOD masq
        "0800",
        "0400",
        "01000000", // WEIGHT 1
        "0800",
        "0500",
        "00000000", // U_THRESH
        "0800",
        "0600",
        "00000000", // L_THRESH
    ]
    .concat();
    assert_eq!(hex(&bytes), expected);
}

#[test]
fn deletes_carry_only_keys_and_bad_schedulers_are_refused() {
    assert_eq!(
        hex(&del_service(&web(None))),
        ["03010000", "3000", "0180", SERVICE_KEY].concat()
    );
    let del = del_dest(
        &web(None),
        SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 2), 8080),
    );
    assert!(hex(&del).starts_with("07010000"));
    let mut bad = web(None);
    bad.scheduler = "a-very-long-scheduler".into();
    assert!(matches!(
        new_service(&bad),
        Err(IpvsError::SchedulerName(name)) if name == bad.scheduler
    ));
    bad.scheduler = String::new();
    assert!(new_service(&bad).is_err());
}

#[test]
fn says_why() {
    assert!(matches!(
        check_available_with(Path::new("/nonexistent/ip_vs")),
        Err(IpvsError::NoKernelSupport)
    ));
    assert!(check_available_with(Path::new("/proc/self")).is_ok());
    assert!(IpvsError::NoKernelSupport
        .to_string()
        .starts_with("ipvs mode unavailable: kernel has no IP_VS support"));
}
