//! DNS for backends given by host name (DESIGN B11): the injectable [`Resolver`], the table of
//! last good answers the config actor keeps (`table`, pure), and the config actor's refresh
//! rounds (`refresh`): at start and on each reload, then every `server.dnsRefresh`. Resolution
//! results only feed `reload::diff::desired_backends`; the backends themselves are added,
//! drained and retired by the reload machinery, exactly as for a configuration change. The data
//! plane never resolves: it connects to the resolved `ip:port` of each backend.

pub mod refresh;
pub mod resolver;
pub mod table;

pub use refresh::{lookup_all, resolve_at_start, Answers, LOOKUP_TIMEOUT};
pub use resolver::{Resolver, SystemResolver};
pub use table::{host_names, is_host_name, DnsTable};
