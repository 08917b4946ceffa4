#include "qdqbert/squad/dataset.h"
#include "qdqbert/json.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_set>

#include "qdqbert/error.h"
#include "qdqbert/io/file.h"
#include "text/pystr.h"
#include "text/utf8.h"

namespace qdqbert::squad {

bool Dataset::has_negative() const {
  for (const auto& e : examples) {
    if (e.is_impossible || e.answers.empty()) return true;
  }
  return false;
}

namespace {

using nlohmann::json;

const json& member(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object()) fail("squad: ", where, ": expected a JSON object");
  auto it = obj.find(key);
  if (it == obj.end()) fail("squad: ", where, ": missing key \"", key, "\"");
  return *it;
}

std::string string_member(const json& obj, const char* key, const std::string& where) {
  const json& v = member(obj, key, where);
  if (!v.is_string()) fail("squad: ", where, ": \"", key, "\" must be a string, got ", v.type_name());
  return v.get<std::string>();
}

const json& array_member(const json& obj, const char* key, const std::string& where) {
  const json& v = member(obj, key, where);
  if (!v.is_array()) fail("squad: ", where, ": \"", key, "\" must be an array, got ", v.type_name());
  return v;
}

}  // namespace

Dataset parse_squad(const std::string& json_text, const std::string& source, const ReadOptions& options) {
  const json root = parse_json_document(json_text, "squad: " + source);
  Dataset ds;
  if (!root.is_object()) fail("squad: ", source, ": top level must be an object with \"data\"");
  if (auto v = root.find("version"); v != root.end() && v->is_string()) ds.version = v->get<std::string>();
  const json& data = array_member(root, "data", source);
  std::unordered_set<std::string> seen;
  for (size_t a = 0; a < data.size(); ++a) {
    const std::string art_where = source + ": data[" + std::to_string(a) + "]";
    const json& article = data[a];
    std::string title;
    if (article.is_object()) {
      if (auto t = article.find("title"); t != article.end() && t->is_string()) title = t->get<std::string>();
    }
    const json& paragraphs = array_member(article, "paragraphs", art_where);
    for (size_t p = 0; p < paragraphs.size(); ++p) {
      const std::string par_where = art_where + ".paragraphs[" + std::to_string(p) + "]";
      const json& par = paragraphs[p];
      const std::string context = string_member(par, "context", par_where);
      const std::u32string context_cp = text::decode_utf8(context, "squad", par_where + ".context");
      const json& qas = array_member(par, "qas", par_where);
      for (size_t q = 0; q < qas.size(); ++q) {
        const json& qa = qas[q];
        const std::string qa_where = par_where + ".qas[" + std::to_string(q) + "]";
        Example ex;
        ex.id = string_member(qa, "id", qa_where);
        const std::string where = source + ": question id \"" + ex.id + "\"";
        if (!seen.insert(ex.id).second) fail("squad: ", where, ": duplicate question id");
        ex.title = title;
        ex.context = context;
        ex.question = string_member(qa, "question", where);
        if (auto imp = qa.find("is_impossible"); imp != qa.end()) {
          if (!imp->is_boolean()) fail("squad: ", where, ": \"is_impossible\" must be a boolean");
          ex.is_impossible = imp->get<bool>();
        }
        const json& answers = array_member(qa, "answers", where);
        for (size_t k = 0; k < answers.size(); ++k) {
          const std::string ans_where = where + ", answers[" + std::to_string(k) + "]";
          Answer ans;
          ans.text = string_member(answers[k], "text", ans_where);
          const json& start = member(answers[k], "answer_start", ans_where);
          if (!start.is_number_integer()) {
            fail("squad: ", ans_where, ": \"answer_start\" must be an integer, got ", start.dump());
          }
          ans.answer_start = start.is_number_unsigned() && start.get<uint64_t>() > INT64_MAX ? INT64_MAX
                                                                                              : start.get<int64_t>();
          // Beyond the context (or negative) it cannot point at an answer, whatever check_answer_start says;
          // refused before any arithmetic on it can overflow.
          if (ans.answer_start < 0 || ans.answer_start > static_cast<int64_t>(context_cp.size())) {
            fail("squad: ", ans_where, ": answer_start ", start.dump(), " is outside the context (length ",
                 context_cp.size(), " characters)");
          }
          if (options.check_answer_start) {
            const std::u32string ans_cp = text::decode_utf8(ans.text, "squad", ans_where + ".text");
            const int64_t n = static_cast<int64_t>(context_cp.size());
            const int64_t len = static_cast<int64_t>(ans_cp.size());
            if (ans.answer_start > n - len ||
                context_cp.compare(static_cast<size_t>(ans.answer_start), ans_cp.size(), ans_cp) != 0) {
              fail("squad: ", ans_where, ": answer_start ", ans.answer_start,
                   " does not match the context: expected \"", ans.text, "\", context has \"",
                   text::slice(context_cp, ans.answer_start, ans.answer_start + len), "\" there (context length ", n,
                   ")");
            }
          }
          ex.answers.push_back(std::move(ans));
        }
        if (ex.is_impossible && !ex.answers.empty()) {
          fail("squad: ", where, ": is_impossible is true but the question has answers");
        }
        ds.examples.push_back(std::move(ex));
      }
    }
  }
  if (ds.examples.empty() && !options.allow_empty) fail("squad: ", source, ": the dataset has no questions");
  return ds;
}

Dataset read_squad(const std::string& path, const ReadOptions& options) {
  return parse_squad(io::read_file(path, "squad"), path, options);
}

}  // namespace qdqbert::squad
