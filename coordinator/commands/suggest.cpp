#include "coordinator/commands/suggest.h"

#include <algorithm>
#include <vector>

namespace ferry {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

std::vector<std::string> long_names(const CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::Option* o : app.get_options())
        for (const std::string& n : o->get_lnames()) names.push_back(n);
    return names;
}

}  // namespace

std::string suggest_option(CLI::App& app, int argc, char** argv) {
    std::vector<std::string> known = long_names(app);
    for (int i = 1; i < argc; ++i)
        for (const CLI::App* sub : app.get_subcommands({}))
            if (sub->get_name() == argv[i]) {
                const std::vector<std::string> more = long_names(*sub);
                known.insert(known.end(), more.begin(), more.end());
            }
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg.rfind("--", 0) != 0 || arg.size() < 3) continue;
        arg = arg.substr(2, arg.find('=') == std::string::npos ? std::string::npos : arg.find('=') - 2);
        if (std::find(known.begin(), known.end(), arg) != known.end()) continue;
        std::string best;
        size_t best_distance = 3;
        for (const std::string& k : known) {
            const size_t d = k.rfind(arg, 0) == 0 ? 0 : edit_distance(arg, k);
            if (d < best_distance) {
                best_distance = d;
                best = k;
            }
        }
        return best.empty() ? "" : "--" + arg + ": did you mean --" + best + "?";
    }
    return "";
}

}  // namespace ferry
