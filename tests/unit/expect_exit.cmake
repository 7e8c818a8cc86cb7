# Runs COMMAND with ARGS (a ;-list) and fails unless it exits with EXPECTED_EXIT and its stdout
# or stderr contains EXPECTED_OUTPUT. REPO becomes DEPLOY_APPS_ROOT; HOME and DEPLOY_APPS_STATE
# point at empty places so that no kubeconfig or local cluster of the machine is used.
set(ENV{DEPLOY_APPS_ROOT} "${REPO}")
set(ENV{HOME} "${CMAKE_CURRENT_BINARY_DIR}/no-home")
set(ENV{DEPLOY_APPS_STATE} "${CMAKE_CURRENT_BINARY_DIR}/no-state")
unset(ENV{KUBECONFIG})
execute_process(
  COMMAND ${COMMAND} ${ARGS}
  RESULT_VARIABLE exit_code
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  TIMEOUT 50)
if(NOT exit_code STREQUAL "${EXPECTED_EXIT}")
  message(FATAL_ERROR "expected exit ${EXPECTED_EXIT}, got ${exit_code}\nstdout:\n${out}\nstderr:\n${err}")
endif()
string(FIND "${out}${err}" "${EXPECTED_OUTPUT}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "output lacks \"${EXPECTED_OUTPUT}\"\nstdout:\n${out}\nstderr:\n${err}")
endif()
