# An installed deploy-apps (cmake --install) run inside another clone, with no DEPLOY_APPS_ROOT:
# it finds that clone from the working directory, as git does, and outside any clone it says
# how to name one. Variables: BUILD_DIR, SOURCE_DIR.
# Outside the build tree: that lies inside this repository, which the binary would find.
string(RANDOM LENGTH 8 suffix)
set(WORK_DIR /tmp/deploy-apps-installed-${suffix})
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
unset(ENV{DEPLOY_APPS_ROOT})

execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0 OR NOT EXISTS ${WORK_DIR}/prefix/bin/deploy-apps)
  message(FATAL_ERROR "cmake --install did not give bin/deploy-apps (exit ${rc})")
endif()
execute_process(COMMAND git clone -q ${SOURCE_DIR} ${WORK_DIR}/clone RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "git clone of ${SOURCE_DIR} failed")
endif()
execute_process(COMMAND git -C ${WORK_DIR}/clone rev-parse --short=12 HEAD
  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE)

# Inside the clone (a subfolder of it): the clone's manifests, versioned by the clone's commit.
execute_process(COMMAND ${WORK_DIR}/prefix/bin/deploy-apps --dry-run go-app
  WORKING_DIRECTORY ${WORK_DIR}/clone/apps/go-app
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "installed binary inside a clone exited ${rc}: ${err}")
endif()
if(NOT out MATCHES "image: 127.0.0.1:5000/go-app:${commit}")
  message(FATAL_ERROR "installed binary did not render the clone's version ${commit}:\n${out}")
endif()

# Outside any clone: a clear usage error.
execute_process(COMMAND ${WORK_DIR}/prefix/bin/deploy-apps --dry-run go-app
  WORKING_DIRECTORY ${WORK_DIR}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "give --repo DIR")
  message(FATAL_ERROR "outside a clone: exit ${rc}, expected 2 with a --repo hint: ${err}")
endif()
# --repo names one from anywhere.
execute_process(COMMAND ${WORK_DIR}/prefix/bin/deploy-apps --repo ${WORK_DIR}/clone --dry-run node-app
  WORKING_DIRECTORY ${WORK_DIR}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "image: 127.0.0.1:5000/node-app:${commit}")
  message(FATAL_ERROR "--repo: exit ${rc}: ${err}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
