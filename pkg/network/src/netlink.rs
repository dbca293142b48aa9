//! A small synchronous rtnetlink client: the link, address and route requests the bridge
//! network makes (a veth pair per pod), sent from this process instead of spawning
//! iproute2's `ip` and util-linux's `nsenter` for each pod.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_ROUTE;

/// A veth pair to make: `name` in this socket's namespace, its peer `peer` in the
/// namespace of `peer_netns`.
pub struct Veth<'a> {
    pub name: &'a str,
    pub peer: &'a str,
    pub peer_netns: &'a OwnedFd,
    pub mtu: u32,
}

/// An rtnetlink socket in one network namespace.
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
}

impl Rtnl {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    /// A socket in the network namespace `netns` (a namespace file): a short-lived thread
    /// enters it and opens the socket, which stays in that namespace.
    pub fn open_in(netns: &OwnedFd) -> io::Result<Rtnl> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                Rtnl::open()
            })
            .join()
            .map_err(|_| io::Error::other("the thread entering the namespace panicked"))?
        })
    }

    /// A namespace file, opened for `open_in` or a veth's peer.
    pub fn namespace(path: &Path) -> io::Result<OwnedFd> {
        Ok(std::fs::File::open(path)?.into())
    }

    /// The index of link `name`; None if there is none.
    pub fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of link `name`, which must exist.
    pub fn existing(&mut self, name: &str) -> io::Result<u32> {
        self.index(name)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no device {name:?}")))
    }

    /// Make link `name` of `kind` (bridge, dummy); an existing one is an error (EEXIST).
    pub fn add_link(&mut self, name: &str, kind: InfoKind, mtu: Option<u32>) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        self.create(RouteNetlinkMessage::NewLink(message))
    }

    /// Make a veth pair.
    pub fn add_veth(&mut self, veth: &Veth) -> io::Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(veth.peer.to_string()),
            LinkAttribute::Mtu(veth.mtu),
            LinkAttribute::NetNsFd(veth.peer_netns.as_raw_fd()),
        ];
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(veth.name.to_string()),
            LinkAttribute::Mtu(veth.mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]),
        ];
        self.create(RouteNetlinkMessage::NewLink(message))
    }

    /// Put link `index` on bridge `bridge` with hairpin mode on (a pod reaches itself through
    /// a service), and bring it up.
    pub fn enslave_hairpin(&mut self, index: u32, bridge: &str) -> io::Result<()> {
        let bridge = self.existing(bridge)?;
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes.push(LinkAttribute::Controller(bridge));
        self.request(RouteNetlinkMessage::NewLink(message), 0)?;
        // The port's options are the bridge's business: set once the link is its port.
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(message), 0)
            .map(drop)
    }

    /// Bring link `index` up.
    pub fn up(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::NewLink(message), 0)
            .map(drop)
    }

    /// Give link `index` the address `ip/prefix`: with `replace` false this fails if it has
    /// it already (EEXIST).
    pub fn address(&mut self, index: u32, ip: IpAddr, prefix: u8, replace: bool) -> io::Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        message.header.prefix_len = prefix;
        message.header.index = index;
        if ip.is_ipv4() {
            message.attributes.push(AddressAttribute::Local(ip));
        }
        message.attributes.push(AddressAttribute::Address(ip));
        let flags = NLM_F_CREATE | if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
        self.request(RouteNetlinkMessage::NewAddress(message), flags)
            .map(drop)
    }

    /// A default IPv4 route through `gateway` on link `index`.
    pub fn default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.create(RouteNetlinkMessage::NewRoute(message))
    }

    /// Delete link `name`; true if there was one.
    pub fn delete(&mut self, name: &str) -> io::Result<bool> {
        let Some(index) = self.index(name)? else {
            return Ok(false);
        };
        let mut message = LinkMessage::default();
        message.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(message), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn create(&mut self, message: RouteNetlinkMessage) -> io::Result<()> {
        self.request(message, NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Send one request and read the replies up to its acknowledgement.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        let mut replies = Vec::new();
        let mut buffer = vec![0u8; 16384];
        loop {
            let received = self.socket.recv(&mut &mut buffer[..], 0)?;
            let mut offset = 0;
            while offset < received {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer[offset..received])
                        .map_err(io::Error::other)?;
                let length = reply.header.length as usize;
                if reply.header.sequence_number == self.sequence {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(replies),
                                Some(_) => Err(e.to_io()),
                            };
                        }
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                offset += (length + 3) & !3;
            }
        }
    }
}
