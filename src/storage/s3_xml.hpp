#pragma once
// The little XML that S3 speaks: extracting element texts from ListObjectsV2,
// multipart and error responses, and escaping text we send. Not a general XML parser:
// S3's responses are flat and never nest an element inside one of the same name.
#include <string>
#include <string_view>
#include <vector>

namespace tandem::storage::s3xml {

// Texts of every <tag>...</tag> in `xml`, entities decoded, in document order.
std::vector<std::string> all(std::string_view xml, std::string_view tag);
// Text of the first <tag>...</tag>, or empty.
std::string first(std::string_view xml, std::string_view tag);
// Raw inner XML of every <tag>...</tag> (for repeated groups such as <Contents>).
std::vector<std::string_view> blocks(std::string_view xml, std::string_view tag);

std::string decode_entities(std::string_view text);
std::string escape(std::string_view text);

}  // namespace tandem::storage::s3xml
