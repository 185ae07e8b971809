// The dashboard page (serving/dashboard.html), built into the binary.
#pragma once
#include <string_view>

namespace ferry {
std::string_view dashboard_page();
}  // namespace ferry
