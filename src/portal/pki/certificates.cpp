#include "portal/pki/certificates.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>

#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

namespace tandem::portal::pki {

namespace {

using tls::openssl_errors;

struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
struct StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};

Error ossl_error(const char* what) {
  return make_error(Errc::internal, "{}: {}", what, openssl_errors());
}

Result<EvpPkeyPtr> generate_p256_key() {
  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return ossl_error("generating an EC P-256 key");
  return key;
}

// A random positive 159-bit serial number, as RFC 5280 and the CA/B forum ask.
Status set_random_serial(X509* cert) {
  std::array<unsigned char, 20> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) return ossl_error("drawing a serial number");
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;  // never zero, never negative
  std::unique_ptr<BIGNUM, BnFree> bn(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return ossl_error("setting the serial number");
  }
  return {};
}

Status set_validity(X509* cert, SystemTime now, std::chrono::days validity) {
  const std::time_t start = std::chrono::system_clock::to_time_t(now - kBackdate);
  const std::time_t end = std::chrono::system_clock::to_time_t(now + validity);
  if (ASN1_TIME_set(X509_getm_notBefore(cert), start) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert), end) == nullptr) {
    return ossl_error("setting the validity period");
  }
  return {};
}

Status set_name(X509_NAME* name, const std::string& common_name, const std::string& organization) {
  auto add = [&](const char* field, const std::string& value) {
    return value.empty() ||
           X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!add("O", organization) || !add("CN", common_name)) return ossl_error("setting the subject name");
  return {};
}

// Adds an extension from OpenSSL's configuration syntax. Only fixed strings written in
// this file go through here, never user input.
Status add_ext(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, ctx, nid, value);
  if (ext == nullptr) return ossl_error(OBJ_nid2sn(nid));
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  if (!ok) return ossl_error(OBJ_nid2sn(nid));
  return {};
}

bool valid_dns_name(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  std::string_view rest = name;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  if (rest.empty() || rest.front() == '.' || rest.back() == '.' || rest.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(rest.begin(), rest.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.'; });
}

Result<std::unique_ptr<GENERAL_NAMES, GeneralNamesFree>> build_sans(const ServerCertSpec& spec) {
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(sk_GENERAL_NAME_new_null());
  if (!names) return ossl_error("allocating subject alternative names");
  for (const auto& dns : spec.dns_names) {
    if (!valid_dns_name(dns)) {
      return make_error(Errc::invalid_argument, "'{}' is not a valid DNS name for a certificate", dns);
    }
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (s == nullptr || gn == nullptr || ASN1_STRING_set(s, dns.data(), static_cast<int>(dns.size())) != 1) {
      ASN1_IA5STRING_free(s);
      GENERAL_NAME_free(gn);
      return ossl_error("building a DNS subject alternative name");
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, s);
    sk_GENERAL_NAME_push(names.get(), gn);
  }
  for (const auto& ip : spec.ip_addresses) {
    ASN1_OCTET_STRING* os = a2i_IPADDRESS(ip.c_str());
    if (os == nullptr) {
      tls::clear_openssl_errors();
      return make_error(Errc::invalid_argument, "'{}' is not a valid IP address for a certificate", ip);
    }
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (gn == nullptr) {
      ASN1_OCTET_STRING_free(os);
      return ossl_error("building an IP subject alternative name");
    }
    GENERAL_NAME_set0_value(gn, GEN_IPADD, os);
    sk_GENERAL_NAME_push(names.get(), gn);
  }
  return names;
}

Result<SystemTime> asn1_to_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return ossl_error("reading a certificate date");
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string ip_to_text(const ASN1_OCTET_STRING* os) {
  const int len = ASN1_STRING_length(os);
  const unsigned char* data = ASN1_STRING_get0_data(os);
  char buf[INET6_ADDRSTRLEN] = {};
  if (len == 4 && inet_ntop(AF_INET, data, buf, sizeof buf) != nullptr) return buf;
  if (len == 16 && inet_ntop(AF_INET6, data, buf, sizeof buf) != nullptr) return buf;
  return {};
}

// Canonical text form of an IP address ("::0001" and "::1" are the same address).
std::string canonical_ip(const std::string& ip) {
  ASN1_OCTET_STRING* os = a2i_IPADDRESS(ip.c_str());
  if (os == nullptr) {
    tls::clear_openssl_errors();
    return ip;
  }
  std::string out = ip_to_text(os);
  ASN1_OCTET_STRING_free(os);
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

Result<CertifiedKey> create_ca(const CaSpec& spec) {
  auto key = generate_p256_key();
  if (!key) return key.error();
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) return ossl_error("allocating a certificate");
  if (auto s = set_random_serial(cert.get()); !s) return s.error();
  if (auto s = set_validity(cert.get(), spec.now, spec.validity); !s) return s.error();
  if (auto s = set_name(X509_get_subject_name(cert.get()), spec.common_name, spec.organization); !s) return s.error();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) != 1 ||
      X509_set_pubkey(cert.get(), key->get()) != 1) {
    return ossl_error("setting the CA issuer and key");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] :
       {std::pair{NID_basic_constraints, "critical,CA:TRUE"}, std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
        std::pair{NID_subject_key_identifier, "hash"}, std::pair{NID_authority_key_identifier, "keyid:always"}}) {
    if (auto s = add_ext(cert.get(), &ctx, nid, value); !s) return s.error();
  }
  if (X509_sign(cert.get(), key->get(), EVP_sha256()) == 0) return ossl_error("signing the CA certificate");
  return CertifiedKey{std::move(cert), std::move(key.value())};
}

Result<CertifiedKey> issue_server_cert(const CertifiedKey& ca, const ServerCertSpec& spec) {
  if (!ca.cert || !ca.key) return make_error(Errc::invalid_argument, "issuing a server certificate: no CA loaded");
  if (spec.dns_names.empty() && spec.ip_addresses.empty()) {
    return make_error(Errc::invalid_argument, "a server certificate needs at least one DNS name or IP address");
  }
  auto sans = build_sans(spec);
  if (!sans) return sans.error();
  auto key = generate_p256_key();
  if (!key) return key.error();
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) return ossl_error("allocating a certificate");
  if (auto s = set_random_serial(cert.get()); !s) return s.error();
  if (auto s = set_validity(cert.get(), spec.now, spec.validity); !s) return s.error();
  std::string cn = spec.common_name;
  if (cn.empty()) cn = spec.dns_names.empty() ? spec.ip_addresses.front() : spec.dns_names.front();
  if (auto s = set_name(X509_get_subject_name(cert.get()), cn, ""); !s) return s.error();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.cert.get())) != 1 ||
      X509_set_pubkey(cert.get(), key->get()) != 1) {
    return ossl_error("setting the issuer and key");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca.cert.get(), cert.get(), nullptr, nullptr, 0);
  for (auto [nid, value] :
       {std::pair{NID_basic_constraints, "critical,CA:FALSE"}, std::pair{NID_key_usage, "critical,digitalSignature"},
        std::pair{NID_ext_key_usage, "serverAuth"}, std::pair{NID_subject_key_identifier, "hash"},
        std::pair{NID_authority_key_identifier, "keyid:always"}}) {
    if (auto s = add_ext(cert.get(), &ctx, nid, value); !s) return s.error();
  }
  if (X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, sans->get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return ossl_error("adding subject alternative names");
  }
  if (X509_sign(cert.get(), ca.key.get(), EVP_sha256()) == 0) return ossl_error("signing the server certificate");
  return CertifiedKey{std::move(cert), std::move(key.value())};
}

Result<SystemTime> not_before(const X509* cert) {
  return asn1_to_time(X509_get0_notBefore(cert));
}
Result<SystemTime> not_after(const X509* cert) {
  return asn1_to_time(X509_get0_notAfter(cert));
}

bool needs_renewal(const X509* cert, SystemTime now, std::chrono::seconds threshold) {
  auto end = not_after(cert);
  if (!end) return true;
  return *end - now <= threshold;
}

SubjectAltNames subject_alt_names(const X509* cert) {
  SubjectAltNames out;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type == GEN_DNS) {
      const auto* s = gn->d.dNSName;
      out.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                 static_cast<std::size_t>(ASN1_STRING_length(s)));
    } else if (gn->type == GEN_IPADD) {
      out.ip_addresses.push_back(ip_to_text(gn->d.iPAddress));
    }
  }
  return out;
}

bool covers(const X509* cert, const ServerCertSpec& spec) {
  const auto sans = subject_alt_names(cert);
  for (const auto& dns : spec.dns_names) {
    const bool found = std::any_of(sans.dns_names.begin(), sans.dns_names.end(),
                                   [&](const std::string& have) { return lower(have) == lower(dns); });
    if (!found) return false;
  }
  for (const auto& ip : spec.ip_addresses) {
    const std::string want = canonical_ip(ip);
    if (std::find(sans.ip_addresses.begin(), sans.ip_addresses.end(), want) == sans.ip_addresses.end()) return false;
  }
  return true;
}

Status verify_server_cert(const X509* ca_cert, const X509* cert, const std::string& host, SystemTime now) {
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), const_cast<X509*>(ca_cert)) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), const_cast<X509*>(cert), nullptr) != 1) {
    return ossl_error("preparing certificate verification");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, std::chrono::system_clock::to_time_t(now));
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  unsigned char ip[16];
  const bool is_ip = inet_pton(AF_INET, host.c_str(), ip) == 1 || inet_pton(AF_INET6, host.c_str(), ip) == 1;
  const int set = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                        : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  if (set != 1) return ossl_error("setting the expected host name");
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    tls::clear_openssl_errors();
    return make_error(Errc::permission_denied, "certificate does not verify for '{}': {}", host,
                      X509_verify_cert_error_string(err));
  }
  return {};
}

}  // namespace tandem::portal::pki
