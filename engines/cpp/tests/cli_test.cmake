# The CLI must fail cleanly (exit 1, a message naming the problem) where no backend can run the engine.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/engine.plan "not a real engine")  # it exists: the backend is what lacks
execute_process(COMMAND ${CLI} ${CMAKE_CURRENT_BINARY_DIR}/engine.plan ${DATA}/rgb32.png
                ${CMAKE_CURRENT_BINARY_DIR}/out.png RESULT_VARIABLE rc ERROR_VARIABLE err)
if(BACKENDS MATCHES "TensorRT")
  return()  # with a backend the missing engine file is the error instead; covered by GPU runs
endif()
if(NOT rc EQUAL 1 OR NOT err MATCHES "no TensorRT backend")
  message(FATAL_ERROR "expected exit 1 and 'no TensorRT backend', got ${rc}: ${err}")
endif()
execute_process(COMMAND ${CLI} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "usage")
  message(FATAL_ERROR "expected usage and exit 2, got ${rc}: ${err}")
endif()
