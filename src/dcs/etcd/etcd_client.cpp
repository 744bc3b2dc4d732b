#include "dcs/etcd/etcd_client.hpp"

#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "dcs/etcd/etcd_client_impl.hpp"

namespace tandem::dcs::etcd {

namespace pb = etcdserverpb;

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string endpoint_target(const std::string& url) {
  std::string s = url;
  for (const char* scheme : {"http://", "https://"}) {
    if (s.rfind(scheme, 0) == 0) {
      s = s.substr(std::string(scheme).size());
      break;
    }
  }
  if (auto slash = s.find('/'); slash != std::string::npos) s = s.substr(0, slash);
  if (s.empty() || s.find(':') == std::string::npos || s.back() == ':' || s.front() == ':') return {};
  return s;
}

bool is_failover_code(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

Errc errc_from_grpc(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return Errc::ok;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return Errc::timeout;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::CANCELLED: return Errc::unavailable;
    case grpc::StatusCode::NOT_FOUND: return Errc::not_found;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE: return Errc::invalid_argument;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::ALREADY_EXISTS: return Errc::conflict;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED: return Errc::permission_denied;
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DATA_LOSS: return Errc::protocol;
    default: return Errc::internal;
  }
}

const char* grpc_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN_CODE";
  }
}

KeyValue from_proto(const mvccpb::KeyValue& kv) {
  return KeyValue{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease()};
}

void require_leader(grpc::ClientContext& ctx) {
  ctx.AddMetadata("hasleader", "true");
}

namespace {

// With the synchronous API, a channel's reconnection attempts only make progress while a
// call is polling it or when gRPC's "backup poller" runs, every 5 s by default. Calls that
// fail fast on a disconnected channel never poll, so after an endpoint comes back it would
// take 5-10 s to be usable again. Poll every 100 ms instead. Read once by grpc_init, so it
// must be set before the first channel exists; an operator's own setting wins.
void tune_grpc_polling() {
  static std::once_flag once;
  std::call_once(once, [] { setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "100", 0); });
}

}  // namespace

EtcdClient::Impl::Impl(const EtcdOptions& options) : urls(options.endpoints), call_timeout(options.call_timeout) {
  tune_grpc_polling();
  if (urls.empty()) throw std::invalid_argument("etcd: no endpoints configured");
  if (call_timeout <= std::chrono::milliseconds(0)) throw std::invalid_argument("etcd: call_timeout must be positive");
  retry_timeout = options.retry_timeout > std::chrono::milliseconds(0)
                      ? options.retry_timeout
                      : call_timeout * static_cast<int64_t>(urls.size());
  for (const auto& url : urls) {
    Endpoint ep;
    ep.url = url;
    ep.target = endpoint_target(url);
    if (ep.target.empty()) {
      throw std::invalid_argument(fmt::format("etcd endpoint '{}': expected http://host:port or host:port", url));
    }
    grpc::ChannelArguments args;
    // Reconnect quickly after a member restarts; gRPC's default backoff grows to minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // gRPC uses this as the timeout of one connection attempt (TCP + HTTP/2 handshake);
    // calls still obey their own deadline.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 3000);
    // Detect a dead peer on an idle watch stream; etcd accepts pings every 5 s or slower.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
    args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
    auto creds = url.rfind("https://", 0) == 0 ? grpc::SslCredentials(grpc::SslCredentialsOptions())
                                               : grpc::InsecureChannelCredentials();
    ep.channel = grpc::CreateCustomChannel(ep.target, creds, args);
    ep.kv = pb::KV::NewStub(ep.channel);
    ep.watch = pb::Watch::NewStub(ep.channel);
    ep.lease = pb::Lease::NewStub(ep.channel);
    endpoints.push_back(std::move(ep));
  }
}

TxnCompare TxnCompare::value_equals(std::string key, std::string value) {
  TxnCompare c;
  c.key = std::move(key);
  c.target = Target::value;
  c.value = std::move(value);
  return c;
}

TxnCompare TxnCompare::create_revision(std::string key, Op op, int64_t revision) {
  TxnCompare c;
  c.key = std::move(key);
  c.target = Target::create_revision;
  c.op = op;
  c.number = revision;
  return c;
}

TxnCompare TxnCompare::mod_revision(std::string key, Op op, int64_t revision) {
  TxnCompare c = create_revision(std::move(key), op, revision);
  c.target = Target::mod_revision;
  return c;
}

TxnCompare TxnCompare::version(std::string key, Op op, int64_t version) {
  TxnCompare c = create_revision(std::move(key), op, version);
  c.target = Target::version;
  return c;
}

TxnOp TxnOp::get(std::string key, bool prefix) {
  TxnOp o;
  o.kind = Kind::get;
  o.key = std::move(key);
  o.prefix = prefix;
  return o;
}

TxnOp TxnOp::put(std::string key, std::string value, int64_t lease) {
  TxnOp o;
  o.kind = Kind::put;
  o.key = std::move(key);
  o.value = std::move(value);
  o.lease = lease;
  return o;
}

TxnOp TxnOp::del(std::string key, bool prefix) {
  TxnOp o;
  o.kind = Kind::del;
  o.key = std::move(key);
  o.prefix = prefix;
  return o;
}

namespace {

void fill_op(const TxnOp& op, pb::RequestOp* out) {
  switch (op.kind) {
    case TxnOp::Kind::get: {
      auto* r = out->mutable_request_range();
      r->set_key(op.key);
      if (op.prefix) r->set_range_end(prefix_end(op.key));
      break;
    }
    case TxnOp::Kind::put: {
      auto* p = out->mutable_request_put();
      p->set_key(op.key);
      p->set_value(op.value);
      p->set_lease(op.lease);
      break;
    }
    case TxnOp::Kind::del: {
      auto* d = out->mutable_request_delete_range();
      d->set_key(op.key);
      if (op.prefix) d->set_range_end(prefix_end(op.key));
      break;
    }
  }
}

void fill_compare(const TxnCompare& c, pb::Compare* out) {
  out->set_key(c.key);
  switch (c.op) {
    case TxnCompare::Op::equal: out->set_result(pb::Compare::EQUAL); break;
    case TxnCompare::Op::not_equal: out->set_result(pb::Compare::NOT_EQUAL); break;
    case TxnCompare::Op::greater: out->set_result(pb::Compare::GREATER); break;
    case TxnCompare::Op::less: out->set_result(pb::Compare::LESS); break;
  }
  switch (c.target) {
    case TxnCompare::Target::version:
      out->set_target(pb::Compare::VERSION);
      out->set_version(c.number);
      break;
    case TxnCompare::Target::create_revision:
      out->set_target(pb::Compare::CREATE);
      out->set_create_revision(c.number);
      break;
    case TxnCompare::Target::mod_revision:
      out->set_target(pb::Compare::MOD);
      out->set_mod_revision(c.number);
      break;
    case TxnCompare::Target::value:
      out->set_target(pb::Compare::VALUE);
      out->set_value(c.value);
      break;
  }
}

RangeResult range_result(const pb::RangeResponse& resp) {
  RangeResult r;
  r.revision = resp.header().revision();
  r.kvs.reserve(static_cast<size_t>(resp.kvs_size()));
  for (const auto& kv : resp.kvs()) r.kvs.push_back(from_proto(kv));
  return r;
}

}  // namespace

EtcdClient::EtcdClient(const EtcdOptions& options) : impl_(std::make_unique<Impl>(options)) {}
EtcdClient::~EtcdClient() = default;

const std::vector<std::string>& EtcdClient::endpoints() const {
  return impl_->urls;
}

std::string EtcdClient::current_endpoint() const {
  return impl_->urls[impl_->current.load()];
}

Result<RangeResult> EtcdClient::get(const std::string& key) {
  pb::RangeRequest req;
  req.set_key(key);
  pb::RangeResponse resp;
  auto st = impl_->call(fmt::format("get {}", key),
                        [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Range(&ctx, req, &resp); });
  if (!st) return st.error();
  return range_result(resp);
}

Result<RangeResult> EtcdClient::get_prefix(const std::string& prefix, int64_t revision) {
  pb::RangeRequest req;
  req.set_key(prefix);
  req.set_range_end(prefix_end(prefix));
  req.set_revision(revision);
  pb::RangeResponse resp;
  auto st = impl_->call(fmt::format("get prefix {}", prefix),
                        [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Range(&ctx, req, &resp); });
  if (!st) return st.error();
  return range_result(resp);
}

Result<int64_t> EtcdClient::put(const std::string& key, const std::string& value, int64_t lease) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  pb::PutResponse resp;
  auto st = impl_->call(fmt::format("put {}", key),
                        [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Put(&ctx, req, &resp); });
  if (!st) return st.error();
  return resp.header().revision();
}

Result<DeleteResult> EtcdClient::del(const std::string& key) {
  pb::DeleteRangeRequest req;
  req.set_key(key);
  pb::DeleteRangeResponse resp;
  auto st = impl_->call(fmt::format("delete {}", key),
                        [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->DeleteRange(&ctx, req, &resp); });
  if (!st) return st.error();
  return DeleteResult{resp.header().revision(), resp.deleted()};
}

Result<DeleteResult> EtcdClient::del_prefix(const std::string& prefix) {
  pb::DeleteRangeRequest req;
  req.set_key(prefix);
  req.set_range_end(prefix_end(prefix));
  pb::DeleteRangeResponse resp;
  auto st = impl_->call(fmt::format("delete prefix {}", prefix),
                        [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->DeleteRange(&ctx, req, &resp); });
  if (!st) return st.error();
  return DeleteResult{resp.header().revision(), resp.deleted()};
}

Result<TxnResult> EtcdClient::txn(const std::vector<TxnCompare>& compares, const std::vector<TxnOp>& success,
                                  const std::vector<TxnOp>& failure) {
  pb::TxnRequest req;
  for (const auto& c : compares) fill_compare(c, req.add_compare());
  for (const auto& op : success) fill_op(op, req.add_success());
  for (const auto& op : failure) fill_op(op, req.add_failure());
  pb::TxnResponse resp;
  std::string what = compares.empty() ? std::string("txn") : fmt::format("txn on {}", compares.front().key);
  auto st = impl_->call(what, [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Txn(&ctx, req, &resp); });
  if (!st) return st.error();
  TxnResult out;
  out.succeeded = resp.succeeded();
  out.revision = resp.header().revision();
  for (const auto& r : resp.responses()) {
    TxnOpResult o;
    switch (r.response_case()) {
      case pb::ResponseOp::kResponseRange:
        o.kind = TxnOp::Kind::get;
        o.kvs = range_result(r.response_range()).kvs;
        break;
      case pb::ResponseOp::kResponsePut: o.kind = TxnOp::Kind::put; break;
      case pb::ResponseOp::kResponseDeleteRange:
        o.kind = TxnOp::Kind::del;
        o.deleted = r.response_delete_range().deleted();
        break;
      default:
        return make_error(Errc::protocol, "etcd {}: unexpected response type {}", what,
                          static_cast<int>(r.response_case()));
    }
    out.results.push_back(std::move(o));
  }
  return out;
}

Result<LeaseInfo> EtcdClient::lease_grant(int64_t ttl_seconds) {
  pb::LeaseGrantRequest req;
  req.set_ttl(ttl_seconds);
  pb::LeaseGrantResponse resp;
  auto st = impl_->call("lease grant",
                        [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.lease->LeaseGrant(&ctx, req, &resp); });
  if (!st) return st.error();
  if (!resp.error().empty()) return make_error(Errc::unavailable, "etcd lease grant: {}", resp.error());
  return LeaseInfo{resp.id(), resp.ttl(), resp.ttl()};
}

Result<int64_t> EtcdClient::lease_keepalive(int64_t lease_id) {
  pb::LeaseKeepAliveRequest req;
  req.set_id(lease_id);
  pb::LeaseKeepAliveResponse resp;
  auto st = impl_->call(fmt::format("lease keepalive {:x}", lease_id), [&](Endpoint& ep, grpc::ClientContext& ctx) {
    auto stream = ep.lease->LeaseKeepAlive(&ctx);
    bool answered = stream->Write(req) && stream->Read(&resp);
    if (!answered) ctx.TryCancel();
    stream->WritesDone();
    grpc::Status fin = stream->Finish();
    if (answered) return grpc::Status::OK;
    // The deadline or a dead connection ended the stream before the answer.
    if (fin.ok() || fin.error_code() == grpc::StatusCode::CANCELLED) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "keepalive stream closed without an answer");
    }
    return fin;
  });
  if (!st) return st.error();
  return resp.ttl() > 0 ? resp.ttl() : 0;
}

Status EtcdClient::lease_revoke(int64_t lease_id) {
  pb::LeaseRevokeRequest req;
  req.set_id(lease_id);
  pb::LeaseRevokeResponse resp;
  auto st = impl_->call(fmt::format("lease revoke {:x}", lease_id), [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.lease->LeaseRevoke(&ctx, req, &resp);
  });
  if (!st && st.error().code == Errc::not_found) return {};  // already gone
  return st;
}

Result<LeaseInfo> EtcdClient::lease_time_to_live(int64_t lease_id) {
  pb::LeaseTimeToLiveRequest req;
  req.set_id(lease_id);
  pb::LeaseTimeToLiveResponse resp;
  auto st = impl_->call(fmt::format("lease time-to-live {:x}", lease_id), [&](Endpoint& ep, grpc::ClientContext& ctx) {
    return ep.lease->LeaseTimeToLive(&ctx, req, &resp);
  });
  if (!st && st.error().code == Errc::not_found) return LeaseInfo{lease_id, -1, 0};
  if (!st) return st.error();
  return LeaseInfo{resp.id(), resp.ttl(), resp.grantedttl()};
}

}  // namespace tandem::dcs::etcd
